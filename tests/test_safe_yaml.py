"""Safe YAML (issue 15): every YAML balpm reads is bounded (size, depth, nodes) and alias-free, errors
are one line, and every config.yaml balpm writes reads back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from balpm import safe_yaml
from balpm.cli import main
from balpm.config import RunConfig, read_yaml
from balpm.errors import ConfigError
from balpm.experiment import runs


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: each level is nine aliases of the one before (9**9 leaves from ~1.9 KB)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def deep_flow(n: int = 20_000) -> str:
    return "a: " + "[" * n + "]" * n + "\n"


def deep_block(n: int = 200) -> str:
    return "".join(" " * i + "k:\n" for i in range(n)) + " " * n + "k: 1\n"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A real run folder written by ``balpm run`` (teaching world, two rounds)."""
    root = tmp_path_factory.mktemp("runs")
    main(["run", "--rounds", "2", "--initial", "20", "--batch-size", "20", "--runs-dir", str(root), "--run-id", "real",
          "--set", "model.ensemble_size=2", "--set", "model.max_epochs=2", "--quiet"])
    return root


@pytest.mark.parametrize("text, cap", [
    (billion_laughs(), "alias (*l0)"),
    ("base: &b {lr: 0.1}\nmodel:\n  <<: *b\n", "alias (*b)"),  # the merge key is an alias too
    (deep_flow(), "deeper than 64 levels"),
    (deep_flow(100), "deeper than 64 levels"),
    (deep_block(), "deeper than 64 levels"),
    ("a: [" + "1, " * 150_000 + "1]\n", "more than 100,000 YAML nodes"),
    ("a: '" + "x" * (safe_yaml.MAX_BYTES + 1) + "'\n", "larger than 1,048,576 bytes"),
    ("a: " + "9" * 5000 + "\n", "a value cannot be read"),
    ("a: [1, 2\n", "is not valid YAML"),
])
def test_each_cap_is_one_line_naming_it(text, cap):
    with pytest.raises(ConfigError) as err:
        safe_yaml.load_text(text, "config 'x.yaml'")
    msg = str(err.value)
    assert cap in msg and msg.startswith("config 'x.yaml'") and "\n" not in msg


def test_ordinary_yaml_loads_as_pyyaml_does_and_anchors_alone_are_harmless():
    text = "model:\n  hidden: [32, 16]\n  lr: 0.003\nloop: {rounds: 3, seed: 0}\nname: &n x\ndata: ~\n"
    assert safe_yaml.load_text(text) == yaml.safe_load(text)
    assert safe_yaml.load_text("") is None
    assert safe_yaml.load_text("a: " + "[" * 63 + "]" * 63) == yaml.safe_load("a: " + "[" * 63 + "]" * 63)  # 64 levels


def test_dump_never_writes_aliases_so_shared_objects_read_back():
    shared = [1, 2, 3]
    doc = {"a": shared, "b": shared, "c": {"d": shared}}
    assert "*id001" in yaml.safe_dump(doc)  # PyYAML itself writes an anchor and aliases here
    text = safe_yaml.dump(doc)
    assert "&" not in text and "*" not in text
    assert safe_yaml.load_text(text) == doc


def test_load_file_reads_at_most_the_cap_and_refuses_non_utf8(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:  # 4 GiB sparse: only MAX_BYTES + 1 are ever read
        fh.truncate(4 << 30)
    with pytest.raises(ConfigError, match="larger than 1,048,576 bytes"):
        safe_yaml.load_file(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        safe_yaml.load_file(latin)
    with pytest.raises(ConfigError, match="not found"):
        safe_yaml.load_file(tmp_path / "missing.yaml")


def test_a_real_runs_config_round_trips(real_run):
    folder = real_run / "real"
    cfg = runs.open_run(real_run, "real").config
    assert RunConfig.from_yaml(folder / "config.yaml") == cfg
    raw = read_yaml(folder / "config.yaml")
    assert RunConfig.from_dict(raw).hash() == cfg.hash()
    assert safe_yaml.load_file(folder / "config.yaml") == yaml.safe_load((folder / "config.yaml").read_text())
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg  # to_yaml (what --print-config shows) reads back
    info = runs.inspect_run(folder)
    assert info.state == "complete" and info.last_round == 1


_PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
         "sys.stderr.write('PEAK_MB=%d' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)); "
         "sys.exit(code)")


def _cli(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """``python -m balpm ARGS`` (through a fresh parent that reports the command's own peak RSS in MB)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "balpm", *args], check=False, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    stderr, _, peak = proc.stderr.rpartition("PEAK_MB=")
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), int(peak)


@pytest.mark.parametrize("kind", ["laughs", "deep"])
def test_cli_config_bomb_is_one_line_with_bounded_memory(tmp_path, kind):
    cfg = tmp_path / f"{kind}.yaml"
    cfg.write_text(billion_laughs() if kind == "laughs" else deep_flow())
    proc, peak_mb = _cli("run", "-c", str(cfg), "--print-config")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: config "), proc.stderr
    assert ("alias" if kind == "laughs" else "deeper than 64") in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert peak_mb < 1500  # the bomb took > 3 GB before


def test_balpm_runs_lists_a_bomb_config_as_broken(real_run, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    os.symlink(real_run / runs.DATASETS_DIR, root / runs.DATASETS_DIR)
    for name, text in (("laughs", billion_laughs()), ("deep", deep_flow())):
        folder = root / name
        folder.mkdir()
        for f in ("status.json", "pool.parquet", "rounds.parquet"):
            (folder / f).write_bytes((real_run / "real" / f).read_bytes())
        (folder / "config.yaml").write_text(text)
    proc, peak_mb = _cli("runs", "--runs-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert "broken" in lines["laughs"] and "alias" in lines["laughs"]
    assert "broken" in lines["deep"] and "deeper than 64" in lines["deep"]
    assert peak_mb < 1500


def test_dashboard_config_display_survives_bombs():
    pytest.importorskip("streamlit")
    from dashboard import state

    for text in (billion_laughs(), deep_flow(), deep_block()):
        assert state.config_for_display(text) == text  # shown as written, never expanded
    shown = state.config_for_display("data:\n  paths: [a.jsonl]\n  synthetic: teaching\nloop: {rounds: 2}\n")
    assert "synthetic: teaching" not in shown and "a.jsonl" in shown


def test_no_yaml_is_read_past_the_safe_loader():
    """Every YAML read in balpm/ and dashboard/ goes through balpm.safe_yaml (a bare yaml.safe_load would
    bring back the alias bomb and the RecursionError)."""
    import re

    repo = Path(__file__).resolve().parents[1]
    bare = re.compile(r"(?<![\w.])yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all|compose|"
                      r"safe_dump|dump)\(")
    offenders = [f"{path.relative_to(repo)}: {m.group(0)}" for folder in ("balpm", "dashboard")
                 for path in sorted((repo / folder).rglob("*.py")) if path.name != "safe_yaml.py"
                 for m in bare.finditer(path.read_text(encoding="utf-8"))]
    assert not offenders, offenders
    assert bare.search("raw = yaml.safe_load(text)") and not bare.search("safe_yaml.dump(doc)")
