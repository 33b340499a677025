"""One error path (issue 15): every exception reaching the CLI becomes ONE ``error: ...`` line on stderr -
exit 2 for bad input, 1 for the environment, 130 on Ctrl-C - with the traceback only under ``--debug`` or
``BALPM_DEBUG=1``. Each class goes through the real entry point (``python -m balpm``) where it can be
caused from outside; the rest (MemoryError, a bug) are injected into ``main()``."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from balpm.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _balpm(*args: str | bytes, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "balpm", *args], check=False, capture_output=True, timeout=180,
                          env=env or ENV, **kw)


def _one_error_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8")  # strict: whatever was printed is valid UTF-8
    assert text.count("\n") == 1 and text.startswith("error: "), text
    assert "Traceback" not in text and "\x1b" not in text
    return text


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """A runs root with one complete real run (teaching world, two rounds)."""
    root = tmp_path_factory.mktemp("runs")
    main(["run", "--rounds", "2", "--initial", "20", "--batch-size", "20", "--runs-dir", str(root), "--run-id", "r0",
          "--set", "model.ensemble_size=2", "--set", "model.max_epochs=2", "--quiet"])
    return root


def test_oserror_writing_report_html_is_one_line_exit_1(runs_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = _balpm("report", str(runs_root), "--html", str(blocker / "curves.html"))
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert str(blocker) in line and ("File exists" in line or "Not a directory" in line)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only (0555) folder")
def test_read_only_folder_is_one_line_exit_1(runs_root, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = _balpm("report", str(runs_root), "--html", str(ro / "curves.html"))
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 1
    assert "Permission denied" in _one_error_line(proc.stderr)


def test_disk_full_on_stdout_is_one_line_exit_1(runs_root):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "balpm", "runs", "--runs-dir", str(runs_root)], stdout=full,
                              stderr=subprocess.PIPE, timeout=120, env=ENV, check=False)
    assert proc.returncode == 1
    assert "No space left on device" in _one_error_line(proc.stderr)


def test_hostile_path_bytes_are_escaped_in_the_one_line(tmp_path):
    esc = os.fsencode(tmp_path) + b"/x\x1b[31mred"
    proc = _balpm("report", esc)
    assert proc.returncode == 2
    assert "\\x1b[31mred" in _one_error_line(proc.stderr)
    bad = os.fsencode(tmp_path) + b"/caf\xe9\xff.yaml"  # not UTF-8: a lone surrogate once decoded
    proc = _balpm("run", "-c", bad, "--print-config")
    assert proc.returncode == 2
    assert "\\udce9\\udcff" in _one_error_line(proc.stderr)


def test_missing_folder_exits_2(tmp_path, capfd):
    proc = _balpm("runs", "--runs-dir", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "does not exist" in _one_error_line(proc.stderr)
    with pytest.raises(SystemExit) as out:  # the same entry point in-process (no second interpreter start)
        main(["report", str(tmp_path / "missing")])
    assert out.value.code == 2
    assert "does not exist" in _one_error_line(capfd.readouterr().err.encode())


def test_ctrl_c_is_one_line_exit_130_and_the_run_is_resumable(tmp_path):
    root = tmp_path / "runs"
    # the child starts with Ctrl-C's default disposition: a test runner started in the background by a shell
    # without job control (`cmd &` in a script) ignores SIGINT, every child inherits that, and Python then
    # keeps ignoring it (POSIX), so the run would go on to exit 0 (seen in a loaded CI run started that way)
    proc = subprocess.Popen([sys.executable, "-m", "balpm", "run", "--rounds", "40", "--runs-dir", str(root),
                             "--run-id", "ki", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    # wait until a round is recorded: the run is then inside the loop (not importing torch or creating
    # the folder, where a loaded machine could deliver the signal before the run exists)
    while not glob.glob(str(root / "ki" / "rounds.parquet")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode(errors="replace")
    assert "interrupted" in _one_error_line(err)
    from balpm.experiment import runs

    info = runs.inspect_run(root / "ki")  # marked failed: balpm runs offers the resume command
    assert info.state == "failed" and info.last_round < 39


def _inject(monkeypatch, exc: BaseException) -> None:
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr("balpm.experiment.runs.list_runs", boom)


@pytest.mark.parametrize("exc, code, words", [
    (MemoryError(), 1, "out of memory"),
    (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), 2, "not valid Unicode"),
    (OSError(28, "No space left on device", "/x/\x1bname"), 1, "No space left on device: '/x/\\x1bname'"),
    (TypeError("a bug"), 1, "internal error (TypeError: a bug)"),
])
def test_each_exception_class_is_one_line_and_traceback_only_under_debug(monkeypatch, capfd, tmp_path, exc, code,
                                                                         words):
    monkeypatch.delenv("BALPM_DEBUG", raising=False)
    _inject(monkeypatch, exc)
    with pytest.raises(SystemExit) as out:
        main(["runs", "--runs-dir", str(tmp_path)])
    assert out.value.code == code
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    for argv, env in ((["--debug", "runs", "--runs-dir", str(tmp_path)], None),
                      (["runs", "--runs-dir", str(tmp_path)], "1")):
        if env:
            monkeypatch.setenv("BALPM_DEBUG", env)
        with pytest.raises(SystemExit) as out:
            main(argv)
        assert out.value.code == code
        err = capfd.readouterr().err
        assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_a_later_call_without_debug_is_one_line_again(monkeypatch, capfd, tmp_path):
    monkeypatch.delenv("BALPM_DEBUG", raising=False)
    _inject(monkeypatch, TypeError("a bug"))
    for argv, traceback in ((["--debug", "runs", "--runs-dir", str(tmp_path)], True),
                            (["runs", "--runs-dir", str(tmp_path)], False)):
        with pytest.raises(SystemExit):
            main(argv)
        assert ("Traceback" in capfd.readouterr().err) == traceback
