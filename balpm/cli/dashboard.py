"""CLI command ``balpm dashboard``: serve the Streamlit app on a runs folder.

The app lives in ``dashboard/app.py`` beside the ``balpm`` package (a source checkout or an editable
install). :func:`serve` runs ``streamlit run dashboard/app.py`` as a child process, bound to
127.0.0.1 by default, with the runs folder passed both as ``BALPM_RUNS_DIR`` and as a script argument.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer

from balpm.errors import BalpmError, ConfigError


def dashboard_app_path() -> Path:
    """``dashboard/app.py`` next to the ``balpm`` package (one-line error when it is not installed)."""
    import balpm

    app = Path(balpm.__file__).resolve().parents[1] / "dashboard" / "app.py"
    if not app.is_file():
        raise BalpmError(
            f"dashboard app not found at {app}; install balpm from a source checkout (pip install -e .)")
    return app


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (so Streamlit can bind it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def streamlit_command(runs_dir: str | Path, port: int = 8501, host: str = "127.0.0.1",
                      open_browser: bool = False) -> list[str]:
    """The ``python -m streamlit run dashboard/app.py ...`` command line :func:`serve` executes."""
    runs = str(Path(runs_dir).expanduser().resolve())
    return [
        sys.executable, "-m", "streamlit", "run", str(dashboard_app_path()),
        "--server.port", str(int(port)), "--server.address", host,
        "--server.headless", "false" if open_browser else "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--", "--runs", runs,
    ]


def _check(runs_dir: str | Path, port: int, host: str) -> Path:
    if not (1 <= int(port) <= 65535):
        raise ConfigError(f"port must be between 1 and 65535 (got {port})")
    runs = Path(runs_dir).expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        raise ConfigError(f"--runs {runs_dir} is a file; give the folder that holds the run folders")
    if not port_free(host, int(port)):
        raise ConfigError(f"port {port} on {host} is in use; pass another --port")
    return runs


def serve(runs_dir: str | Path, port: int = 8501, host: str = "127.0.0.1", open_browser: bool = False) -> int:
    """Run the dashboard on ``runs_dir`` until it is stopped (Ctrl-C); return Streamlit's exit code."""
    runs = _check(runs_dir, port, host)
    cmd = streamlit_command(runs, port, host, open_browser)
    # runs started from the app resolve relative paths of their config (data files, the feature
    # cache folder) against the folder `balpm dashboard` was started in, as `balpm run` would
    env = {**os.environ, "BALPM_RUNS_DIR": str(runs), "BALPM_LAUNCH_DIR": os.getcwd()}
    shown = f"[{host}]" if ":" in host else host
    print(f"balpm dashboard: http://{shown}:{port}  (runs folder: {runs}; Ctrl-C to stop)", flush=True)
    # cwd = the checkout, so Streamlit also reads .streamlit/config.toml (theme, no usage statistics)
    proc = subprocess.Popen(cmd, env=env, cwd=str(dashboard_app_path().parents[1]))
    terminated: list[float] = []
    previous = _forward_sigterm(proc, terminated)
    try:
        while True:  # poll rather than wait(): a signal handler must never wait on the child itself
            code = proc.poll()
            if code is not None:
                return code
            if terminated and time.monotonic() - terminated[0] > 10:
                proc.kill()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return _stop(proc)
    finally:
        if proc.poll() is None:
            _stop(proc)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _forward_sigterm(proc: subprocess.Popen, terminated: list[float]) -> object | None:
    """On SIGTERM, terminate the Streamlit child too (the polling loop then returns its exit code)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.terminate()
        terminated.append(time.monotonic())

    return signal.signal(signal.SIGTERM, handler)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("dashboard")
    def dashboard_cmd(
        runs: Path = typer.Option(Path("runs"), "--runs", help="folder holding the run folders"),
        port: int = typer.Option(8501, "--port", help="port to serve on"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind (127.0.0.1: this machine only)"),
        open_browser: bool = typer.Option(False, "--open/--no-open", help="open a browser tab"),
    ) -> None:
        """Serve the Streamlit dashboard on a runs folder (http://127.0.0.1:8501 by default)."""
        code = serve(runs, port=port, host=host, open_browser=open_browser)
        if code not in (0, -2, 130):
            raise typer.Exit(code)
