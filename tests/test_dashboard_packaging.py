"""The newcomer path around the dashboard: the wheel carries it (found through importlib.resources), and a
test run without the real data ends with one line saying how many real-data tests were skipped."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BALPM_SHARED_DATA", "PYTHONPATH")}
    env.update(extra)
    return env


def test_missing_real_data_is_one_line_at_the_end_and_fails_in_ci(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_data.py"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(BALPM_SHARED_DATA=str(tmp_path / "none")), capture_output=True,
                          text=True, timeout=300, check=False)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert re.match(r"^[1-9]\d* real-data test\(s\) skipped: no data at .*none; to run them, set BALPM_SHARED_DATA",
                    lines[-1]), \
        lines[-3:]
    assert not any(line.startswith("SKIPPED") for line in lines), "one line, not one per test"
    proc = subprocess.run(cmd, cwd=REPO, env=_env(BALPM_SHARED_DATA=str(tmp_path / "none"), CI="true"),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0 and "real data not found" in proc.stdout


def test_every_balpm_subpackage_is_in_the_wheel_list():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "balpm").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "balpm_dashboard" in listed and "dashboard" not in listed


@pytest.mark.slow
def test_the_wheel_carries_the_dashboard_and_balpm_dashboard_finds_it_outside_the_checkout(tmp_path):
    # build from a copy of the sources, so that setuptools' build/ folder never lands in the checkout
    src = tmp_path / "src"
    junk = shutil.ignore_patterns(".git", ".venv", ".balpm_cache", "__pycache__", "*.egg-info", ".pytest_cache",
                                  ".hypothesis")

    def skip(folder: str, names: list[str]) -> set[str]:  # runs/, build/, docs/ at the root only (balpm/experiment/runs/ is code)
        top = {"runs", "build", "test-artifacts", "docs"} & set(names) if Path(folder) == REPO else set()
        return set(junk(folder, names)) | top

    shutil.copytree(REPO, src, ignore=skip)
    wheels = tmp_path / "whl"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, timeout=600, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("balpm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("balpm_dashboard/app.py", "balpm_dashboard/asgi_app.py", "balpm_dashboard/state.py", "balpm_dashboard/jobs.py",
                 "balpm_dashboard/views/runs.py", "balpm_dashboard/views/prompt_space.py", "balpm/experiment/snapshot.py",
                 "balpm/experiment/runs/reader.py"):
        assert want in names, want
    assert not any(n.startswith("dashboard/") for n in names), "no top-level `dashboard` package"
    # "install" it outside the checkout (a target folder first on sys.path) and run the app from there
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=600, capture_output=True, cwd=tmp_path)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    probe = f"""
import balpm, balpm_dashboard
from balpm.cli.dashboard import dashboard_app_path, streamlit_command
app = dashboard_app_path()
assert str(app).startswith({str(site)!r}), app
assert balpm.__file__.startswith({str(site)!r}), balpm.__file__
assert streamlit_command({str(runs_dir)!r})[4] == str(app.with_name('asgi_app.py'))
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(str(app), default_timeout=120)
at.run()
assert not at.exception, [e.message for e in at.exception]
print("APP", app, "TITLE", at.title[0].value)
"""
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=_env(PYTHONPATH=str(site), BALPM_RUNS_DIR=str(runs_dir)), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TITLE Runs" in proc.stdout
