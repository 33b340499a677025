"""The one YAML reader and writer of balpm: bounded, alias-free, errors as one line.

Every YAML balpm reads (``balpm run -c``, ``--print-config``, a run folder's ``config.yaml`` read by
``balpm runs`` / ``balpm report`` / ``--resume``, the dashboard) goes through :func:`load_text` or
:func:`load_file`. Before anything is built the document's events are scanned (libyaml's parser when
PyYAML has it, else PyYAML's own; neither recurses) and it is refused, one line naming the cap, when

- it is larger than :data:`MAX_BYTES` (a balpm config is a few KB),
- it uses an alias (``*name``; with anchors, aliases are what makes a 2 KB "billion laughs" file
  expand to gigabytes, and the merge key ``<<: *base`` is an alias too),
- it nests collections deeper than :data:`MAX_DEPTH` (a 20,000-deep document made PyYAML's recursive
  composer raise ``RecursionError``),
- it has more than :data:`MAX_NODES` nodes.

Only then is it loaded with the safe loader (no Python objects). Anything PyYAML still raises while
building values (an integer beyond Python's digit limit, an impossible timestamp) becomes a one-line
:class:`~balpm.errors.ConfigError` too. :func:`dump` writes YAML without anchors or aliases, so
everything balpm writes is read back by :func:`load_text`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from balpm.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64
MAX_NODES = 100_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _NoAliasDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes a repeated object out again instead of an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(obj: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump(obj, sort_keys=False, **kwargs)`` without anchors/aliases (readable by :func:`load_text`)."""
    kwargs.setdefault("sort_keys", False)
    return yaml.dump(obj, Dumper=_NoAliasDumper, **kwargs)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    return " ".join(str(exc).split())[:limit]


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def check_events(text: str, where: str = "the YAML text", *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Scan ``text``'s parser events; a one-line ConfigError on an alias, too deep nesting or too many nodes.

    Syntax errors are left to the load that follows (this scan stops at them silently).
    """
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"{where} uses a YAML alias (*{event.anchor}){_line(event)}: aliases are not accepted "
                                  "(they let a small file expand without bound); write the value out in full")
            if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                nodes += 1
                if nodes > max_nodes:
                    raise ConfigError(f"{where} has more than {max_nodes:,} YAML nodes (the cap); a balpm config has a "
                                      "few dozen - is this the right file?")
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > max_depth:
                    raise ConfigError(f"{where} nests YAML deeper than {max_depth} levels (the cap){_line(event)}; "
                                      "a balpm config is two levels deep - is this the right file?")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml reads ahead and stops at its own cap (1,000 flow levels)
            raise ConfigError(f"{where} nests YAML deeper than {max_depth} levels (the cap); a balpm config is two "
                              "levels deep - is this the right file?") from None
        return  # a syntax error: reported, with its position, by the load that follows


def load_text(text: str, where: str = "the YAML text", *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_NODES) -> Any:
    """The document in ``text`` (safe types only), or a one-line ConfigError naming ``where`` and the cap hit."""
    text = str(text)
    if len(text) > max_bytes:  # characters >= bytes / 4: a cheap first check before encoding
        raise ConfigError(f"{where} is larger than {max_bytes:,} bytes (the cap on YAML balpm reads); a balpm config "
                          "is a few KB - is this the right file?")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(f"{where} holds text that is not valid Unicode (a lone surrogate); write it as UTF-8") from None
    if size > max_bytes:
        raise ConfigError(f"{where} is larger than {max_bytes:,} bytes (the cap on YAML balpm reads); a balpm config "
                          "is a few KB - is this the right file?")
    check_events(text, where, max_depth=max_depth, max_nodes=max_nodes)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {_one_line(exc)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # values PyYAML cannot build
        raise ConfigError(f"{where}: a value cannot be read ({type(exc).__name__}: {_one_line(exc, 160)})") from None


def load_file(path: str | Path, where: str | None = None, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_NODES) -> Any:
    """The YAML document in the file ``path`` (at most ``max_bytes`` are read), or a one-line ConfigError."""
    path = Path(path)
    where = where or f"YAML file {str(path)!r}"
    try:
        if not path.is_file():
            raise ConfigError(f"{where} not found (or not a file)")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{where} unreadable ({_one_line(exc, 160)})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{where} is larger than {max_bytes:,} bytes (the cap on YAML balpm reads); a balpm config "
                          "is a few KB - is this the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return load_text(text, where, max_bytes=max_bytes, max_depth=max_depth, max_nodes=max_nodes)
