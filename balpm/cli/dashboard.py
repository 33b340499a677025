"""CLI command ``balpm dashboard``: serve the Streamlit app on a runs folder.

The app is the package ``balpm_dashboard`` (the repository's ``dashboard/`` folder, mapped to that name
by ``pyproject.toml``, in a wheel and in an editable install alike) and is found through
``importlib.resources``. :func:`serve` runs ``streamlit run .../app.py`` as a child process, bound to
127.0.0.1 by default, with the runs folder passed both as ``BALPM_RUNS_DIR`` and as a script argument.
The server has no authentication: anyone who can reach the port reads every run in the folder, so
keep it on 127.0.0.1 and use an SSH tunnel (``ssh -L 8501:127.0.0.1:8501 host``) for remote use.

What Streamlit serves is ``asgi_app.py``: the app behind a Host-header check
(:mod:`balpm_dashboard.host_guard`), so a web page using DNS rebinding cannot drive it: only
``localhost``, ``127.0.0.1``, ``[::1]``, the bound address and ``--allow-host`` names get in (403
otherwise). Binding anywhere but loopback prints a warning paragraph to stderr.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import typer
from balpm_dashboard.host_guard import is_loopback, normalize

from balpm.errors import BalpmError, ConfigError

APP_PACKAGE = "balpm_dashboard"


def dashboard_app_path() -> Path:
    """``app.py`` of the installed ``balpm_dashboard`` package, found with ``importlib.resources``
    (one-line error when the install lacks it)."""
    try:
        app = resources.files(APP_PACKAGE) / "app.py"
    except ModuleNotFoundError:
        raise BalpmError(f"the dashboard package {APP_PACKAGE} is not installed; reinstall balpm "
                         "(pip install balpm, or pip install -e . in a checkout)") from None
    if not app.is_file():
        raise BalpmError(f"dashboard app not found at {app}; reinstall balpm")
    return Path(str(app))


def served_app_path() -> Path:
    """``asgi_app.py`` beside :func:`dashboard_app_path`: the app behind the Host-header check, which
    ``streamlit run`` serves."""
    return dashboard_app_path().with_name("asgi_app.py")


def check_allowed_hosts(names: Sequence[str]) -> list[str]:
    """``--allow-host`` names, normalised (lower case, IPv6 in brackets); a one-line ConfigError for a
    name that is not a host name or an IP address (a port, a URL, a wildcard)."""
    out = []
    for name in names:
        norm = normalize(name)
        if norm is None:
            raise ConfigError(f"--allow-host {name!r} is not a host name or an IP address; give the bare name the "
                              "browser uses (e.g. --allow-host myhost.lan, no port, scheme or wildcard)")
        out.append(norm)
    return out


def exposure_warning(host: str, allow_hosts: Sequence[str] = ()) -> str | None:
    """The paragraph printed to stderr when ``host`` is not a loopback address, else None."""
    if is_loopback(host):
        return None
    names = ", ".join(allow_hosts) or "none"
    return (f"WARNING: balpm dashboard is binding to {host}, which is reachable from other machines. The dashboard "
            "has NO authentication: anyone who can reach this port can read every run in the runs folder and start "
            "runs and sweeps on this machine. Only requests whose Host header is localhost, 127.0.0.1, [::1], the "
            f"bound address or an --allow-host name are answered (allowed extra names: {names}); anything else gets "
            "403. Prefer --host 127.0.0.1 with an SSH tunnel (ssh -L 8501:127.0.0.1:8501 this-host) for remote use.")


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (so Streamlit can bind it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# .streamlit/config.toml's look and limits, passed as flags too: an installed wheel has no such file
# (tests/test_dashboard_pages.py checks the two agree)
APP_SETTINGS: dict[str, str] = {
    "server.maxMessageSize": "400", "server.runOnSave": "false", "runner.magicEnabled": "false",
    "client.toolbarMode": "minimal", "theme.base": "light", "theme.primaryColor": "#c2410c",
    "theme.backgroundColor": "#ffffff", "theme.secondaryBackgroundColor": "#f4f4f0", "theme.textColor": "#1f2328",
    "theme.font": "sans-serif",
}


def streamlit_command(runs_dir: str | Path, port: int = 8501, host: str = "127.0.0.1",
                      open_browser: bool = False, allow_outside_data: bool = False,
                      allow_hosts: Sequence[str] = ()) -> list[str]:
    """The ``python -m streamlit run .../asgi_app.py ...`` command line :func:`serve` executes.

    The security settings are passed as flags too (an installed wheel has no ``.streamlit/config.toml``):
    XSRF protection on, CORS on (no cross-origin requests), no usage statistics. ``allow_hosts``: extra
    names the Host-header check lets in (``--allow-host NAME`` after ``--``).
    """
    runs = str(Path(runs_dir).expanduser().resolve())
    return [
        sys.executable, "-m", "streamlit", "run", str(served_app_path()),
        "--server.port", str(int(port)), "--server.address", host,
        "--server.headless", "false" if open_browser else "true",
        "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        *[part for key, value in APP_SETTINGS.items() for part in (f"--{key}", value)],
        "--", *[part for name in allow_hosts for part in ("--allow-host", name)], "--runs", runs,
        *(["--allow-outside-data"] if allow_outside_data else []),
    ]


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """One-line ConfigError when ``port`` is out of range or already in use on ``host`` (``balpm demo``
    calls this before its runs, so a busy port is found in a second, not after the demo)."""
    if not (1 <= int(port) <= 65535):
        raise ConfigError(f"port must be between 1 and 65535 (got {port})")
    if not port_free(host, int(port)):
        raise ConfigError(f"port {port} on {host} is in use; pass another --port (or stop what uses it)")


def check_runs_dir(runs_dir: str | Path, create: bool = False) -> Path:
    """The resolved runs folder; a one-line ConfigError when it is a file, or missing without ``create``
    (a typo must not show an empty dashboard)."""
    runs = Path(runs_dir).expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        raise ConfigError(f"--runs {runs_dir} is a file; give the folder that holds the run folders")
    if not runs.exists():
        if not create:
            raise ConfigError(f"--runs {runs_dir} does not exist; check the path, or pass --create to start an "
                              "empty runs folder there")
        runs.mkdir(parents=True)
    return runs


def _check(runs_dir: str | Path, port: int, host: str, create: bool = False) -> Path:
    check_port(port, host)
    return check_runs_dir(runs_dir, create)


def serve(runs_dir: str | Path, port: int = 8501, host: str = "127.0.0.1", open_browser: bool = False,
          create: bool = False, allow_outside_data: bool = False, allow_hosts: Sequence[str] = ()) -> int:
    """Run the dashboard on ``runs_dir`` until it is stopped (Ctrl-C); return Streamlit's exit code.

    ``create``: make a missing runs folder (else it is an error). ``allow_outside_data``: let configs
    typed into the app read data and caches outside the runs folder (relative paths then resolve
    against the folder this command was started in). ``allow_hosts``: names besides the loopback ones
    and the bound address that the Host-header check lets in."""
    names = check_allowed_hosts(allow_hosts)
    runs = _check(runs_dir, port, host, create)
    warning = exposure_warning(host, names)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    cmd = streamlit_command(runs, port, host, open_browser, allow_outside_data, names)
    env = {**os.environ, "BALPM_RUNS_DIR": str(runs), "BALPM_LAUNCH_DIR": os.getcwd()}
    env.pop("BALPM_ALLOW_OUTSIDE_DATA", None)  # only the flag allows it
    if allow_outside_data:
        env["BALPM_ALLOW_OUTSIDE_DATA"] = "1"
    shown = f"[{host}]" if ":" in host else host
    print(f"balpm dashboard: http://{shown}:{port}  (runs folder: {runs}; Ctrl-C to stop; no authentication: "
          "keep it on 127.0.0.1, use an SSH tunnel for remote use)", flush=True)
    # cwd = the folder above the app (the checkout), so Streamlit also reads .streamlit/config.toml there
    proc = subprocess.Popen(cmd, env=env, cwd=str(dashboard_app_path().parents[1]))
    if open_browser:  # Streamlit opens no tab for an st.App: open it once the server answers
        _open_when_up(proc, host, port)
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


def _open_when_up(proc: subprocess.Popen, host: str, port: int, timeout: float = 120.0) -> None:
    """In a daemon thread: poll the server's health endpoint, then open a browser tab on it."""


    name = normalize(host) or host
    name = "127.0.0.1" if name in ("0.0.0.0", "[::]") else name  # what the browser may ask for
    url = f"http://{name}:{port}"

    def poll() -> None:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        webbrowser.open(url)
                        return
            except OSError:
                pass
            time.sleep(0.5)

    threading.Thread(target=poll, name="balpm-dashboard-open", daemon=True).start()


def _stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _forward_sigterm(proc: subprocess.Popen, terminated: list[float]) -> object | None:
    """On SIGTERM, terminate the Streamlit child too (the polling loop then returns its exit code)."""
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
        runs: Path = typer.Option(Path("runs"), "--runs", help="folder holding the run folders (must exist)"),
        port: int = typer.Option(8501, "--port", help="port to serve on"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind (127.0.0.1: this machine only; the "
                                                             "server has no authentication)"),
        open_browser: bool = typer.Option(False, "--open/--no-open", help="open a browser tab"),
        create: bool = typer.Option(False, "--create", help="create the runs folder when it does not exist"),
        allow_outside_data: bool = typer.Option(False, "--allow-outside-data",
                                                help="let configs typed into the app read data files and feature "
                                                     "caches outside the runs folder"),
        allow_host: list[str] = typer.Option([], "--allow-host", metavar="NAME",
                                             help="also answer requests for this host name (repeatable; by default "
                                                  "only localhost, 127.0.0.1, [::1] and the bound address: others "
                                                  "get 403, which stops DNS-rebinding pages)"),
    ) -> None:
        """Serve the Streamlit dashboard on a runs folder (http://127.0.0.1:8501 by default; no authentication)."""
        code = serve(runs, port=port, host=host, open_browser=open_browser, create=create,
                     allow_outside_data=allow_outside_data, allow_hosts=allow_host)
        if code not in (0, -2, 130):
            raise typer.Exit(code)
