"""Generated documentation: the CLI, config, policy and import references, computed from the code.

Used two ways:

* as a mkdocs hook (``hooks:`` in mkdocs.yml): every ``<!-- generated: NAME -->`` line of a page is
  replaced, at build time, by the markdown of ``SECTIONS[NAME]`` (``cli``, ``config``, ``policies``,
  ``layers``, ``imports``, ``contributing``), so the site can never disagree with the code it documents;
* as a script: ``.venv/bin/python docs/hooks/reference.py [NAME ...]`` prints the same markdown.

Everything is read generically, never from a hand-kept list:

* ``cli``: the click tree that typer builds from :data:`balpm.cli.app` (every command, group and option,
  with its help, type, default and allowed values);
* ``config``: the dataclass fields of :class:`balpm.config.RunConfig`'s sections, recursively (a field whose
  default is itself a dataclass becomes a sub-section), with the metadata ``balpm.config._f`` attaches
  (``help``, ``choices``, bounds ``ge`` / ``gt`` / ``le`` / ``lt``, and any other key);
* ``policies``: :data:`balpm.acquisition.REGISTRY`; every dataclass field of an entry is shown, and a field
  holding a dataclass *class* (a policy's own knob class) is expanded into its fields like a config section;
* ``layers`` / ``imports``: the ``import`` statements of ``balpm/`` and ``dashboard/`` (read with :mod:`ast`,
  function-level imports included), grouped into the layers of :data:`LAYERS`, with any import circle named.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the checkout's own balpm when the hook runs outside an install
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->[ \t]*$", re.MULTILINE)


def _cell(value: Any) -> str:
    """Text safe inside a markdown table cell (pipes escaped, no line breaks, no raw HTML)."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _code(value: Any) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    tick = "``" if "`" in text else "`"
    return f"{tick}{text}{tick}" if text else ""


def _show_default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) if value else "(empty)"
    if value == "":
        return '""'
    return str(value)


# ---- the CLI ------------------------------------------------------------------------------------
def _commands(group: Any, prefix: str = "balpm") -> list[tuple[str, Any]]:
    """Every (full name, click command) under ``group``, depth first, hidden ones left out."""
    out = []
    for name in sorted(getattr(group, "commands", {})):
        cmd = group.commands[name]
        if getattr(cmd, "hidden", False):
            continue
        full = f"{prefix} {name}"
        out.append((full, cmd))
        out.extend(_commands(cmd, full))
    return out


def _param_kind(p: Any) -> str:
    """The value type of a click / typer parameter, whichever of their APIs this version has."""
    ptype = getattr(p, "type", None)
    if ptype is not None:
        choices = getattr(ptype, "choices", None)
        return "choice: " + ", ".join(map(str, choices)) if choices else str(getattr(ptype, "name", ""))
    bare = getattr(p, "bare_type", None)  # typer >= 0.2x's own parameter classes
    try:
        return str(bare()) if callable(bare) else str(bare or "")
    except TypeError:
        return ""


def cli_tree() -> Any:
    import typer

    import balpm.cli

    return typer.main.get_command(balpm.cli.app)


def cli_markdown() -> str:
    root = cli_tree()
    intro = ("Every command of `balpm` with every option, generated from the command line itself "
             "(`balpm COMMAND --help` prints the same). A config knob without a flag of its own is set with "
             "`--set section.field=value`: see the config reference below.")
    lines = [intro, ""]
    lines.append("| command | what it does |")
    lines.append("|---|---|")
    commands = _commands(root)
    for full, cmd in commands:
        anchor = full.replace(" ", "-")
        short = (cmd.help or "").strip().split("\n\n")[0]
        lines.append(f"| [{_code(full)}](#{anchor}) | {_cell(short)} |")
    lines.append("")
    for full, cmd in commands:
        anchor = full.replace(" ", "-")
        lines.append(f"### `{full}` {{#{anchor}}}")
        lines.append("")
        if cmd.help:
            lines.append(" ".join(cmd.help.split()))
            lines.append("")
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        args = [p for p in params if p.param_type_name == "argument"]
        opts = [p for p in params if p.param_type_name == "option" and "--help" not in p.opts]
        if args:
            lines.append("Arguments: " + ", ".join(_code((p.name or "").upper() + ("..." if p.nargs == -1 else ""))
                                                    for p in args))
            lines.append("")
        if opts:
            lines.append("| option | type | default | help |")
            lines.append("|---|---|---|---|")
            for p in opts:
                names = " / ".join(_code(o) for o in [*p.opts, *getattr(p, "secondary_opts", [])])
                kind = "flag" if p.is_flag else _param_kind(p)
                default = p.default
                if callable(default) or default is None or (p.is_flag and default is False) or p.multiple and not default:
                    shown = ""
                else:
                    shown = _code(_show_default(default))
                lines.append(f"| {names} | {_cell(kind)} | {shown} | {_cell(p.help or '')} |")
            lines.append("")
        if getattr(cmd, "commands", None):
            lines.append("Sub-commands: " + ", ".join(_code(f"{full} {n}") for n in sorted(cmd.commands)))
            lines.append("")
    return "\n".join(lines)


# ---- the config -----------------------------------------------------------------------------------
_BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _field_rows(obj: Any, prefix: str, flags: dict[str, str]) -> tuple[list[str], list[tuple[str, Any]]]:
    """Table rows of the fields of dataclass instance or class ``obj``; nested dataclasses come back separately."""
    rows, nested = [], []
    instance = obj if not isinstance(obj, type) else None
    for f in dataclasses.fields(obj):
        if (f.metadata or {}).get("internal"):  # plumbing, not a knob (e.g. the slot holding a policy's knobs)
            continue
        if instance is not None:
            value = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            value = "(required)"
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            nested.append((key, value))
            continue
        meta = dict(f.metadata or {})
        help_text = meta.pop("help", "") or ""
        choices = meta.pop("choices", None)
        own_flag = meta.pop("flag", None)  # a knob class may name its own CLI flag
        if "since_default" in meta:  # left out of the run hash at this value (older run ids stay valid)
            meta["runs made before it had"] = meta.pop("since_default")
        limits = []
        for name, word in _BOUND_WORDS.items():
            bound = meta.pop(name, None)
            if bound is not None:
                limits.append(f"{word} {bound:g}" if isinstance(bound, (int, float)) else f"{word} {bound}")
        if choices:
            limits.append("one of " + ", ".join(str(c) for c in choices))
        limits.extend(f"{k}: {v}" for k, v in meta.items() if v is not None and v != "" and v != () and v != [])
        flag = own_flag or flags.get(key, "")
        rows.append(f"| {_code(key)} | {_code(flag) if flag else ''} | {_code(_show_default(value))} | "
                    f"{_cell('; '.join(limits))} | {_cell(help_text)} |")
    return rows, nested


def _section_markdown(title: str, obj: Any, prefix: str, flags: dict[str, str], level: int = 3) -> list[str]:
    rows, nested = _field_rows(obj, prefix, flags)
    doc = (type(obj).__doc__ if not isinstance(obj, type) else obj.__doc__) or ""
    lines = [f"{'#' * level} {title}", ""]
    if doc.strip():
        lines += [" ".join(doc.strip().split("\n\n")[0].split()), ""]
    if rows:
        lines += ["| key | flag | default | allowed | help |", "|---|---|---|---|---|", *rows, ""]
    for key, value in nested:
        lines += _section_markdown(f"`{key}`", value, key, flags, min(level + 1, 6))
    return lines


def config_markdown() -> str:
    from balpm import config

    flags = dict(getattr(config, "CLI_FLAGS", {}) or {})
    run = config.RunConfig()
    intro = ("The fields of `balpm/config.py`'s dataclasses, with the help, bounds and allowed values the code "
             "checks. Set any of them in a YAML config (`-c FILE`, sections as below), with its flag where it has "
             "one, or with `--set section.field=value`; precedence: defaults < YAML < flags < `--set`. These are the "
             "dataclass defaults (the paper's settings); a run without `--data` fills the fields you did not set from "
             "the teaching preset (`balpm/experiment/presets.py`; `balpm run --print-config` shows the resolved values). A policy's "
             "own knobs (`acquisition.<knob>`) are listed with their policy in the policies section below.")
    lines = [intro, ""]
    for f in dataclasses.fields(run):
        value = getattr(run, f.name)
        if dataclasses.is_dataclass(value):
            lines += _section_markdown(f"`{f.name}`", value, f.name, flags)
    return "\n".join(lines)


# ---- the policy registry --------------------------------------------------------------------------
#: the config section a policy's knobs are set in (``--set acquisition.<knob>=...``)
POLICY_SECTION = "acquisition"

def policies_markdown() -> str:
    from balpm import acquisition

    registry = getattr(acquisition, "REGISTRY", {})
    intro = ("The policy registry (`balpm.acquisition.REGISTRY`), entry by entry, as the code holds it. "
             "`--policy NAME` (run) and `--policies A,B` (sweep) take these names.")
    lines = [intro, ""]
    knob_owners: dict[Any, list[str]] = {}
    summary = ["| policy | help | other fields of its entry |", "|---|---|---|"]
    for name, spec in registry.items():
        help_text = getattr(spec, "help", "") or ""
        extras = []
        attrs = ([(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)]
                 if dataclasses.is_dataclass(spec) else list(vars(spec).items()))
        for attr, value in attrs:
            if attr in ("name", "help"):
                continue
            if dataclasses.is_dataclass(value):
                cls = value if isinstance(value, type) else type(value)
                if dataclasses.fields(cls):
                    extras.append(f"{attr}: {cls.__name__} (below)")
                    knob_owners.setdefault(value, []).append(name)
                else:
                    extras.append(f"{attr}: none")
            elif callable(value):  # how it is built: code, not documentation
                continue
            elif isinstance(value, (tuple, list, frozenset, set)):
                extras.append(f"{attr}: {', '.join(map(str, value)) or '(none)'}")
            else:
                extras.append(f"{attr}: {value}")
        summary.append(f"| {_code(name)} | {_cell(help_text)} | {_cell('; '.join(extras))} |")
    knob_sections: list[str] = []
    for value, owners in knob_owners.items():
        cls = value if isinstance(value, type) else type(value)
        title = f"`{cls.__name__}`: the knobs of " + ", ".join(f"`{o}`" for o in owners)
        knob_sections += _section_markdown(title, value, POLICY_SECTION, {}, 3)
    return "\n".join(lines + summary + [""] + knob_sections)


# ---- imports --------------------------------------------------------------------------------------
#: the layers of the architecture picture, by module-name prefix (first match wins); a module matching
#: none shows as its own name, so a new module is never hidden
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("balpm.cli", "balpm.__main__")),
    ("dashboard", ("dashboard",)),
    ("data", ("balpm.data",)),
    ("features", ("balpm.features",)),
    ("engine", ("balpm.acquisition", "balpm.engine")),
    ("experiment", ("balpm.experiment",)),
    ("evidence", ("balpm.evidence",)),
    ("foundation", ("balpm.config", "balpm.errors", "balpm.safe_yaml", "balpm.npy_files", "balpm.knobs", "balpm.devices",
                    "balpm._moved", "balpm")),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (balpm.* and dashboard.*, also as balpm_dashboard.*)."""
    files = [p for top in ("balpm", "dashboard") for p in sorted((ROOT / top).rglob("*.py"))]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                if base.startswith("balpm_dashboard"):  # the installed name of dashboard/
                    base = "dashboard" + base[len("balpm_dashboard"):]
                # ``from pkg import submodule`` depends on the submodule, anything else on ``pkg`` itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                t = t.replace("balpm_dashboard", "dashboard", 1) if t.startswith("balpm_dashboard") else t
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith(("balpm", "dashboard")):
                    deps.add(t)
        graph[name] = deps
    return graph


def layer_of(module: str) -> str:
    for layer, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return layer
    return module


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (networkx), i.e. the import circles."""
    g = nx.DiGraph((a, b) for a, targets in graph.items() for b in targets)
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def layers_markdown() -> str:
    graph = import_graph()
    edges: dict[tuple[str, str], int] = defaultdict(int)
    members: dict[str, list[str]] = defaultdict(list)
    for mod, deps in graph.items():
        members[layer_of(mod)].append(mod)
        for d in deps:
            a, b = layer_of(mod), layer_of(d)
            if a != b:
                edges[(a, b)] += 1
    ids = {name: re.sub(r"\W", "_", name) for name in members}
    lines = ["```mermaid", "flowchart TD"]
    for name, mods in members.items():
        lines.append(f'  {ids[name]}["{name} ({len(mods)} modules)"]')
    for (a, b), n in sorted(edges.items()):
        lines.append(f"  {ids[a]} -->|{n}| {ids[b]}")
    lines.append("```")
    lines.append("")
    lines.append("An arrow A -> B with n: n imports from modules of A into modules of B (read from the code at build "
                 "time, imports inside functions included).")
    back = sorted((a, b) for (a, b) in edges if (b, a) in edges and a < b)
    if back:
        lines.append("Layers that import each other both ways: " + "; ".join(f"{a} <-> {b}" for a, b in back) + ".")
    lines.append("")
    lines.append("The same as a table (the picture needs JavaScript from a CDN; this does not):")
    lines.append("")
    lines.append("| layer | imports from (number of imports) |")
    lines.append("|---|---|")
    for name in members:
        outs = sorted((b, n) for (a, b), n in edges.items() if a == name)
        lines.append(f"| {name} | {', '.join(f'{b} ({n})' for b, n in outs) or '-'} |")
    lines.append("")
    lines.append("| layer | modules |")
    lines.append("|---|---|")
    for name, mods in members.items():
        lines.append(f"| {name} | {', '.join(_code(m) for m in sorted(mods))} |")
    return "\n".join(lines)


def imports_markdown() -> str:
    graph = import_graph()
    cycles = import_cycles(graph)
    lines = []
    if cycles:
        lines.append("**Import circles** (modules that reach each other through imports, function-level ones "
                     "included): " + "; ".join(" <-> ".join(c) for c in cycles) + ".")
    else:
        lines.append("**No import circles**: no module reaches itself through imports (function-level ones included).")
    lines += ["", "| module | imports (project modules) |", "|---|---|"]
    for mod in sorted(graph):
        lines.append(f"| {_code(mod)} | {', '.join(_code(d) for d in sorted(graph[mod])) or '-'} |")
    return "\n".join(lines)


def contributing_markdown() -> str:
    """CONTRIBUTING.md at the repository's root (one copy of the text), less its title."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    return re.sub(r"\A# [^\n]*\n", "", text).lstrip("\n")


SECTIONS: dict[str, Callable[[], str]] = {
    "contributing": contributing_markdown,
    "cli": cli_markdown,
    "config": config_markdown,
    "policies": policies_markdown,
    "layers": layers_markdown,
    "imports": imports_markdown,
}


def expand(markdown: str) -> str:
    """The page with each ``<!-- generated: NAME -->`` line replaced by ``SECTIONS[NAME]()``."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in SECTIONS:
            raise ValueError(f"unknown generated section {name!r}; known: {', '.join(SECTIONS)}")
        return SECTIONS[name]()
    return MARKER.sub(sub, markdown)


#: pages that other engineers write: listed in the navigation (after the page named) only when they exist
OPTIONAL_PAGES = [("Policies", "policies.md", "method.md")]


def on_config(config: Any, **_: Any) -> Any:
    """mkdocs hook: add each optional page that exists to the navigation, after its neighbour."""
    docs = Path(config["docs_dir"])
    nav = config.get("nav") or []
    for title, page, after in OPTIONAL_PAGES:
        listed = any(isinstance(item, dict) and page in item.values() for item in nav)
        if (docs / page).is_file() and not listed:
            at = next((i + 1 for i, item in enumerate(nav) if isinstance(item, dict) and after in item.values()),
                      len(nav))
            nav.insert(at, {title: page})
    return config


def on_page_markdown(markdown: str, page: Any = None, config: Any = None, files: Any = None, **_: Any) -> str:
    """mkdocs hook: expand the generated sections of a page."""
    return expand(markdown)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(SECTIONS):
        print(SECTIONS[name]())
        print()
