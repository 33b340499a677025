"""Command-line options generated from the config dataclasses (:mod:`balpm.config`).

One generator serves every command whose options are config knobs (``balpm run`` / ``sweep``,
``balpm featurize``, ``balpm data inspect``): :func:`field_option` turns a config key (``"features.pooling"``)
into a typer option carrying its field's help, type, allowed values and default, and
:func:`config_options` appends such options (plus ``-c/--config`` and ``--set``, as asked) to a command and
hands the command only the options that were actually given, as one :class:`GivenOptions` argument
named ``flags``. Whether an option was given is read from click's parameter source, so a default never
overrides a YAML value or ``--set``.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import typer

from balpm.config import RunConfig, coerce_value, field_info, parse_assignment
from balpm.errors import ConfigError

SET_HELP = ("any config knob as section.field=value (repeatable; applied last), e.g. --set model.patience=5 "
            "--set features.dtype=bf16; the fields and their help are in balpm/config.py")


def click_modules() -> list:
    """The click implementations in play: typer's vendored copy (typer >= 0.2x) and/or click itself."""
    mods = []
    try:
        import typer._click as vendored
        import typer._click.core  # noqa: F401
        import typer._click.exceptions  # noqa: F401
        import typer._click.globals  # noqa: F401

        mods.append(vendored)
    except ImportError:
        pass
    try:
        import click
        import click.exceptions  # noqa: F401

        mods.append(click)
    except ImportError:
        pass
    return mods


def field_default(key: str) -> Any:
    """The dataclass default of config key ``key`` as the CLI shows it (tuples comma-joined)."""
    section, _, name = key.partition(".")
    value = getattr(getattr(RunConfig(), section), name)
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def flag_name(key: str) -> str:
    """The conventional flag of a config key: ``"features.max_length"`` -> ``"--max-length"``."""
    return "--" + key.partition(".")[2].replace("_", "-")


def field_option(key: str, flag: str, *, short: str | None = None, negative: str | None = None,
                 preset: Any = None, preset_note: str = "", default_note: str = "otherwise") -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of config key ``key`` as the option ``flag``.

    Help, type, allowed values (shown as the metavar) and default come from the field. A tuple of
    texts (``data.paths``) becomes a repeatable option; a bool becomes ``flag/negative`` (or typer's
    ``--no-...``). ``preset`` is the value a preset gives the key instead of the field's default:
    ``--help`` then shows both (``preset_note`` and ``default_note`` say when each applies).
    """
    tp, f = field_info(key)
    decls = (flag, short) if short else (flag,)
    help_text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    default = field_default(key)
    if preset is not None and tp is not bool:
        help_text += f" (default: {preset} {preset_note}; {default} {default_note})"
        return ({int: int, float: float}.get(tp, str),
                typer.Option(default, *decls, help=help_text, show_default=False,
                             metavar={int: "INTEGER", float: "FLOAT"}.get(tp, "TEXT")))
    if tp is bool:
        first = f"{flag}/{negative}" if negative else flag
        return bool, typer.Option(default, first, *decls[1:], help=help_text, metavar="")
    if typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, Ellipsis):
        return Optional[list[str]], typer.Option(None, *decls, help=help_text + " (repeatable)", metavar="PATH")
    if choices:
        return str, typer.Option(default, *decls, help=help_text, metavar="[" + "|".join(choices) + "]")
    if tp is int:
        return int, typer.Option(default, *decls, help=help_text, metavar="INTEGER")
    if tp is float:
        return float, typer.Option(default, *decls, help=help_text, metavar="FLOAT")
    return str, typer.Option(default, *decls, help=help_text, metavar="TEXT")


@dataclass
class GivenOptions:
    """The config part of a command line: ``-c`` (where offered), the generated options given, ``--set``."""

    config: Optional[Path] = None
    values: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)

    @property
    def given(self) -> bool:
        """Whether any config option or ``--set`` was given (besides ``-c``)."""
        return bool(self.values or self.sets)


def _current_context() -> tuple[Any, Any]:
    """click's current context and its ``ParameterSource.DEFAULT`` (``(None, None)`` outside a command)."""
    for mod in click_modules():  # the click typer runs on: its vendored copy, or click itself
        ctx = mod.globals.get_current_context(silent=True)
        if ctx is not None:
            return ctx, mod.core.ParameterSource.DEFAULT
    return None, None


def config_options(options: Mapping[str, tuple[Any, Any]], *, config_file: bool = False, set_help: str = SET_HELP,
                   make: Callable[..., GivenOptions] = GivenOptions) -> Callable[[Any], Any]:
    """Decorator: append the generated ``options`` (python name -> ``(annotation, typer.Option)``, e.g. from
    :func:`field_option`), ``-c/--config`` when ``config_file`` and ``--set`` to a command's own options.

    The command receives the options actually given as one ``make(config=..., values=..., sets=...)``
    argument named ``flags`` (it must declare it); its other options stay as they are.
    """
    def deco(fn: Any) -> Any:
        sig = inspect.signature(fn)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in sig.parameters.items() if name != "flags"]
        extra = []
        if config_file:
            opt = typer.Option(None, "--config", "-c", metavar="YAML",
                               help="YAML config (sections data, features, model, acquisition, loop); "
                                    "a run's own config.yaml works")
            extra.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=opt,
                                           annotation=Optional[Path]))
        for pname, (ann, opt) in options.items():
            extra.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann))
        extra.append(inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[list[str]],
                                       default=typer.Option(None, "--set", help=set_help, metavar="SECTION.FIELD=VALUE")))
        defaults = {pname: opt.default for pname, (_, opt) in options.items()}

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            ctx, default_source = _current_context()
            flags = make(config=kwargs.pop("config", None), sets=list(kwargs.pop("set_") or []))
            for pname in options:
                value = kwargs.pop(pname)
                if value is None or value == [] or value == ():
                    continue
                if isinstance(value, list):
                    flags.values[pname] = list(value)
                    continue
                given = (ctx.get_parameter_source(pname) not in (None, default_source) if ctx is not None
                         else value != defaults[pname])
                if given:
                    flags.values[pname] = value
            return fn(flags=flags, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + extra, return_annotation=None)
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        del wrapper.__wrapped__
        return wrapper
    return deco


#: one generated option: python parameter name -> (config key, flag) or (config key, flag, short flag)
OptionKeys = Mapping[str, tuple[str, ...]]


def options_for(keys: OptionKeys) -> dict[str, tuple[Any, Any]]:
    """The typer options of ``keys`` (python name -> ``(config key, flag[, short])``), for :func:`config_options`."""
    return {pname: field_option(spec[0], spec[1], short=spec[2] if len(spec) > 2 else None)
            for pname, spec in keys.items()}


def config_from(flags: GivenOptions, keys: OptionKeys, *, sections: tuple[str, ...],
                fixed: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig (defaults, then ``fixed`` keys, then the options given, then ``--set``), not yet validated.

    Each value goes through the one coercion of its field (:func:`balpm.config.coerce_value`), so an option
    and ``--set`` of the same key give the same error after the place they name. ``--set`` may only name
    keys of ``sections`` (the ones this command reads). The caller runs ``validate()``.
    """
    changes: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any) -> None:
        section, _, name = key.partition(".")
        changes.setdefault(section, {})[name] = value

    for key, value in (fixed or {}).items():
        put(key, coerce_value(key, value))
    for pname, value in flags.values.items():
        key, flag = keys[pname][:2]
        put(key, coerce_value(key, tuple(value) if isinstance(value, list) else value, flag))
    for item in flags.sets:
        key, value = parse_assignment(item)
        if key.partition(".")[0] not in sections:
            raise ConfigError(f"--set {key}: this command reads only {' and '.join(s + '.*' for s in sections)}; "
                              f"drop it (balpm run takes the other sections)")
        put(key, value)
    return RunConfig().replace(**changes)
