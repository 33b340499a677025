"""The documentation: the mkdocs site builds with --strict (every internal link and anchor resolves, the
generated reference covers every config field and command), the README stays a front door (< 12 KB, its
links resolve), and every ``balpm ...`` command line written in the docs names commands and options that
exist (a flag renamed in the code fails here, not in a reader's terminal)."""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
sys.path.insert(0, str(ROOT / "docs" / "hooks"))
import reference

sys.path.pop(0)


# ---- the site -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # mkdocs-material's end-of-life banner
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-4000:]}"
    assert "WARNING" not in log, log[-4000:]
    return out


def test_site_builds_strict_with_every_page(site):
    for page in ("index", "guide", "method", "teaching-world", "results", "evidence", "performance", "dashboard",
                 "reference", "architecture", "contributing", "hardening"):
        assert (site / f"{page}.html").is_file(), page


def test_generated_reference_lists_every_config_field_and_command(site):
    from balpm import config

    html = (site / "reference.html").read_text(encoding="utf-8")

    def keys(obj, prefix):
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            value = getattr(obj, f.name)
            key = f"{prefix}.{f.name}" if prefix else f.name
            if dataclasses.is_dataclass(value):
                yield from keys(value, key)
            elif prefix:
                yield key

    if hasattr(config, "section_fields"):  # every settable key, policies' knobs included
        expected = [f"{s}.{name}" for s in config.SECTIONS for name in config.section_fields(s)]
    else:
        expected = list(keys(config.RunConfig(), ""))
    missing = [k for k in expected if f"<code>{k}</code>" not in html]
    assert not missing, f"config fields missing from the generated reference: {missing}"
    for full, _ in reference._commands(reference.cli_tree()):
        assert f'id="{full.replace(" ", "-")}"' in html, full
    from balpm.acquisition import REGISTRY

    for name in REGISTRY:
        assert f"<code>{name}</code>" in html, name


def test_generator_reads_any_dataclass_generically():
    """A knob class it has never seen (a policy's own config, nested sections) comes out with its help, bounds
    and allowed values, so the reference keeps up when policies carry their own knob classes."""
    def knob(default, help, **meta):
        return dataclasses.field(default=default, metadata={"help": help, **meta})

    @dataclasses.dataclass(frozen=True)
    class Inner:
        width: int = knob(7, "the inner width", ge=1, lt=100)

    @dataclasses.dataclass(frozen=True)
    class ToyKnobs:
        """A toy policy's knobs."""
        target_size: int = knob(64, "how many | targets", gt=0)
        mode: str = knob("a", "which mode", choices=("a", "b"))
        inner: Inner = dataclasses.field(default_factory=Inner)

    md = "\n".join(reference._section_markdown("toy", ToyKnobs(), "toy", {"toy.mode": "--mode"}))
    assert "| `toy.target_size` |  | `64` | &gt; 0 | how many \\| targets |" in md
    assert "| `toy.mode` | `--mode` | `a` | one of a, b | which mode |" in md
    assert "| `toy.inner.width` |  | `7` | &gt;= 1; &lt; 100 | the inner width |" in md
    assert "A toy policy's knobs." in md


def test_import_graph_finds_a_circle(tmp_path, monkeypatch):
    for name, body in {"balpm/__init__.py": "", "balpm/a.py": "from balpm import b\n",
                       "balpm/b.py": "def f():\n    from balpm.a import x\n", "balpm/c.py": "import balpm.a\n",
                       "dashboard/app.py": "from balpm_dashboard import views\n", "dashboard/views.py": ""}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    graph = reference.import_graph()
    assert graph["balpm.c"] == {"balpm.a"} and graph["dashboard.app"] == {"dashboard.views"}
    assert reference.import_cycles(graph) == [["balpm.a", "balpm.b"]]


# ---- the README -----------------------------------------------------------------------------------
def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) < 12 * 1024, f"README.md is {len(readme)} bytes; move detail into docs/"
    text = readme.decode("utf-8")
    assert "<!-- test-command -->" in text  # .ci/run reads the test command from the line after it
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_nothing_cites_the_reference_outside_the_repository():
    """The method is written in docs/method.md (same section numbers); nothing cites REFERENCE.md, a file that
    is not in the repository."""
    sources = [*DOC_FILES, *(p for top in ("balpm", "dashboard", "benchmarks", "tests", "data")
                              for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md", ".yaml"))]
    cited = [str(p.relative_to(ROOT)) for p in sources
             if p.resolve() != Path(__file__).resolve() and "REFERENCE.md" in p.read_text(encoding="utf-8")]
    assert not cited, f"these cite REFERENCE.md (not in the repository); cite docs/method.md instead: {cited}"
    assert "## 8. Flaws of the reference code" in (ROOT / "docs" / "method.md").read_text(encoding="utf-8")


# ---- every documented command line parses --------------------------------------------------------
SHELL_FENCES = ("", "bash", "sh", "shell", "console")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks whose info string is a shell (or empty), fences paired in order."""
    blocks, body, info = [], None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if body is None and stripped.startswith("```"):
            info, body = stripped[3:].strip().lower(), []
        elif body is not None and stripped.startswith("```"):
            if info in SHELL_FENCES:
                blocks.append("\n".join(body) + "\n")
            body = None
        elif body is not None:
            body.append(line)
    return blocks
INLINE = re.compile(r"`((?:\.venv/bin/)?balpm [a-z][a-z-]*(?: [^`]*)?)`")  # `balpm beta=0.1` is a label, not a command


def documented_commands(text: str) -> list[str]:
    """Every ``balpm ...`` command in the bash blocks and inline code of ``text`` (continuations joined,
    ``;`` / ``&&`` chains split, comments dropped)."""
    lines: list[str] = []
    for block in shell_blocks(text):
        lines += block.replace("\\\n", " ").splitlines()
    lines += [m for m in INLINE.findall(text) if "..." not in m.split("#")[0].replace("-s0-...", "")]
    out = []
    for line in lines:
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError:  # an unbalanced quote in prose: not a command line
            continue
        cmd: list[str] = []
        for tok in [*tokens, ";"]:
            if tok in (";", "&&", "||", "|", "&"):
                if cmd and cmd[0].rsplit("/", 1)[-1] == "balpm":
                    out.append(shlex.join(cmd))
                cmd = []
            else:
                cmd.append(tok)
    return out


@functools.lru_cache(maxsize=1)
def _cli_tree():
    return reference.cli_tree()


def check_command(line: str) -> list[str]:
    """The problems of one documented command line: unknown sub-commands or options, a --set key that is not
    a config field. Empty when it parses."""
    from balpm import config

    root = _cli_tree()
    tokens = shlex.split(line)[1:]
    cmd, path = root, ["balpm"]
    while tokens and getattr(cmd, "commands", None) and not tokens[0].startswith("-"):
        name = tokens.pop(0)
        if name.isupper():  # a placeholder: balpm COMMAND --help
            return []
        if name not in cmd.commands:
            return [f"unknown command {' '.join(path + [name])!r}"]
        cmd, path = cmd.commands[name], path + [name]
    if getattr(cmd, "commands", None) and not any(t in ("--help", "--version") for t in tokens):
        return [f"{' '.join(path)} needs a sub-command"]
    params = {}
    for p in cmd.params:
        for opt in [*p.opts, *getattr(p, "secondary_opts", [])]:
            params[opt] = p
    params["--help"] = None
    if cmd is root:
        params.update({"--version": None, "--debug": None})
    problems = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("-") or tok == "-":
            continue
        name, eq, value = tok.partition("=")
        if name not in params:
            problems.append(f"{' '.join(path)}: no option {name}")
            continue
        p = params[name]
        takes_value = p is not None and not getattr(p, "is_flag", False) and not getattr(p, "count", False)
        if takes_value and not eq:
            if i >= len(tokens):  # prose naming a flag alone (`balpm run -c`)
                break
            value = tokens[i]
            i += 1
        if name == "--set" and hasattr(config, "parse_assignment"):
            try:
                config.parse_assignment(value)
            except Exception as exc:  # noqa: BLE001 - any refusal is a broken doc line
                problems.append(f"{' '.join(path)}: --set {value}: {exc}")
    return problems


def test_every_documented_command_parses():
    seen, bad = 0, []
    for path in DOC_FILES:
        for line in documented_commands(path.read_text(encoding="utf-8")):
            seen += 1
            bad += [f"{path.relative_to(ROOT)}: {line}: {p}" for p in check_command(line)]
    assert seen >= 40, f"only {seen} documented balpm commands found"
    assert not bad, "\n".join(bad)


def test_command_checker_catches_what_it_should():
    text = ("```text\nbalpm output --not-a-command\n```\n"
            "```bash\nbalpm run --policy balpm --seed 0 \\\n    --no-such-flag 3   # comment --bogus\n"
            "balpm sweep --seeds 0-7; balpm nonsense --x\nbalpm data inspect FILE --json\n```\n"
            "and inline `balpm run --set model.nonexistent_knob=1`.\n")
    cmds = documented_commands(text)
    assert cmds[:3] == ["balpm run --policy balpm --seed 0 --no-such-flag 3", "balpm sweep --seeds 0-7",
                        "balpm nonsense --x"]
    problems = [check_command(c) for c in cmds]
    assert problems[0] == ["balpm run: no option --no-such-flag"]
    assert problems[1] == []
    assert problems[2] == ["unknown command 'balpm nonsense'"]
    assert problems[3] == []
    assert len(problems[4]) == 1 and "nonexistent_knob" in problems[4][0]


CHEAP = ("--print-config", "--knobs", "--help", "--version")


def test_cheap_documented_commands_run(capsys):
    """The documented lines that only print (a resolved config, the world knobs, help) are run as written,
    in process, and must exit 0: what the docs show as a way to inspect things works."""
    from balpm.cli import main

    ran = []
    for path in DOC_FILES:
        for line in documented_commands(path.read_text(encoding="utf-8")):
            args = shlex.split(line)[1:]
            if not any(a in CHEAP for a in args) or any(a.isupper() for a in args):
                continue
            try:
                main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code or 0
            out = capsys.readouterr()
            assert code == 0, f"{path.name}: {line} exited {code}: {out.err[-500:]}"
            ran.append(line)
    assert len(ran) >= 3, ran

