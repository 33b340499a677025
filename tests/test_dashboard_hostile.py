"""The dashboard against hostile input: text from a runs folder never renders as markup, and the server
answers only to loopback host names.

(1) Every page of ``dashboard/app.py``'s ``PAGES`` (read from its source, not copied) in Streamlit's
AppTest on the runs folder of :mod:`hostile_runs`: no exception, every Markdown body (captions, alerts,
headers, expander labels) holds the hostile strings only in their escaped form (or inside a code span),
plotly figures hold them HTML-escaped, and plain text (st.text, table cells) shows control characters
and right-to-left overrides as visible escapes. (2) :mod:`balpm_dashboard.untrusted` on the constructs one at
a time. (3) ``balpm dashboard`` started for real on 127.0.0.1: HTTP requests and WebSocket handshakes
whose ``Host`` is not a loopback name get 403 (DNS rebinding); ``--allow-host`` adds a name; binding
to 0.0.0.0 prints a warning paragraph.
"""
from __future__ import annotations

import ast
import asyncio
import http.client
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import hostile_runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
APP = REPO / "dashboard" / "app.py"


def app_pages() -> list[tuple[str, str]]:
    """``(path, title)`` of every ``st.Page`` in ``PAGES`` of dashboard/app.py (parsed, not imported:
    importing would run the app)."""
    tree = ast.parse(APP.read_text())
    pages = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "PAGES" for t in node.targets))
    out = []
    for call in pages.elts:
        title = next(k.value.value for k in call.keywords if k.arg == "title")
        out.append((call.args[0].value, title))
    return out


def raw_markup(body: str) -> list[str]:
    """The hostile constructs found unescaped in a Markdown body (code spans, which render verbatim, removed)."""
    outside_code = re.sub(r"``.*?``", "", body)
    return [token for token in hostile_runs.RAW_MARKUP if re.search(r"(?<!\\)" + re.escape(token), outside_code)]


# ---- (1) every page in AppTest (hostile_runs_root: tests/conftest.py) --------------------------
def _strings(doc) -> str:
    """Every string of a parsed JSON document (keys too), joined."""
    if isinstance(doc, dict):
        return " ".join(_strings(k) + " " + _strings(v) for k, v in doc.items())
    if isinstance(doc, list):
        return " ".join(_strings(v) for v in doc)
    return doc if isinstance(doc, str) else ""


def _markdown_bodies(at) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "header", "title"):
        out += [e.value for e in getattr(at, kind)]
    out += [e.label for e in at.expander]
    return out


def test_app_pages_lists_every_view():
    pages = app_pages()
    assert {p for p, _ in pages} >= {"views/runs.py", "views/lesson.py"}
    assert len(pages) == len(list((REPO / "dashboard" / "views").glob("*.py")))


def test_every_page_shows_hostile_text_escaped(hostile_runs_root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from balpm_dashboard import untrusted

    monkeypatch.setenv("BALPM_RUNS_DIR", str(hostile_runs_root))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    seen: dict[str, list[str]] = {}
    charts: dict[str, str] = {}
    for path, _ in app_pages():
        at.switch_page(path).run()
        assert not at.exception, (path, [e.message for e in at.exception])
        if path == "views/runs.py":  # the failed run's status.json, whose error holds ESC and U+202E
            at.selectbox(key="detail_run").set_value("random-s0-failed-copy").run()
            assert not at.exception and len(at.json) == 1, [e.message for e in at.exception]
            error = json.loads(at.json[0].value)["error"]  # as written, with ESC and U+202E made visible
            assert error == "RuntimeError: " + untrusted.text(hostile_runs.HOSTILE)
        if path == "views/inspect.py":  # two acquired items: their prompt ids title the expanders
            picks = at.multiselect(key="in_typed").options[:2]
            at.multiselect(key="in_typed").set_value([int(p.split()[-1]) for p in picks]).run()
            assert not at.exception, [e.message for e in at.exception]
            shown = " ".join(t.value for t in at.text)  # prompts and answers: st.text, plain
            assert untrusted.text(hostile_runs.HOSTILE) in shown  # as typed, the ESC and RLO made visible
            assert "\x1b" not in shown and "\u202e" not in shown
        seen[path] = _markdown_bodies(at)
        charts[path] = " ".join(json.dumps(json.loads(c.proto.spec)) for c in at.get("plotly_chart"))
        for body in seen[path]:
            assert not raw_markup(body), (path, raw_markup(body), body[:300])
        for table in at.dataframe:  # plain cells, but no control character or bidi override reaches the screen
            cells = " ".join(v for col in table.value.columns for v in table.value[col] if isinstance(v, str))
            assert "\x1b" not in cells and "\u202e" not in cells, path
        documents = " ".join(_strings(json.loads(j.value)) for j in at.json)  # status.json on the Runs page
        assert "\x1b" not in documents and "\u202e" not in documents, path
    runs_page = " ".join(seen["views/runs.py"])
    # the failed run's error, the renamed folder and the bad config value are shown, escaped
    assert untrusted.md(f"RuntimeError: {hostile_runs.HOSTILE}") in runs_page
    assert untrusted.md(hostile_runs.FOLDER) in runs_page and "is not a run id" in runs_page
    assert untrusted.md(hostile_runs.HOSTILE)[:100] in runs_page.replace(untrusted.md(f"RuntimeError: {hostile_runs.HOSTILE}"), "")
    # the runs folder (sidebar, every page) as a code span
    assert all(any(untrusted.code(hostile_runs_root) in b for b in bodies) for bodies in seen.values())
    # Inspect: the expanders are titled with the hostile prompt ids, escaped
    assert any(untrusted.md(hostile_runs.HOSTILE, 80)[:60] in b for b in seen["views/inspect.py"])
    # plotly: hover texts carry the prompt ids HTML-escaped, never a raw tag or a hover-template field
    maps = charts["views/prompt_space.py"] + charts["views/inspect.py"]
    assert "&lt;img src=http://203.0.113.9/y&gt;" in maps and "&#36;\\\\frac&#123;1}&#123;2}&#36;" in maps
    for path, spec in charts.items():
        assert "<img" not in spec and "<script" not in spec and "\\u001b" not in spec, path


# ---- (2) the escaping helpers ----------------------------------------------------------------
def test_markdown_escaping_breaks_every_construct():
    from balpm_dashboard.untrusted import JOINER, code, frame, md, one_line, plot, text, tree

    out = md(hostile_runs.HOSTILE)
    assert not raw_markup(out)
    assert "\n" not in md("a\nb\r\nc") and md("a  \t b") == "a b"
    # escapes resolve to the text as typed, minus the invisible joiners, with controls made visible
    typed = re.sub(r"\\(.)", r"\1", out).replace(JOINER, "")
    assert typed == hostile_runs.HOSTILE.replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
    # autolinks and shortcodes are matched after escapes are resolved: a joiner must break each
    for raw, broken in (("http://h/z", "http\\:" + JOINER + "\\/\\/h\\/z"), ("www.x.org", "www" + JOINER + "\\.x\\.org"),
                         ("a@b.c", "a\\@" + JOINER + "b\\.c"), (":smile:", "\\:" + JOINER + "smile\\:" + JOINER),
                         ("WWW.X", "WWW" + JOINER + "\\.X")):
        assert md(raw) == broken, raw
    assert md("x" * 50, limit=10) == "x" * 10 + "\\.\\.\\."
    assert one_line("a\x00b\x7fc\x9bd\u2066e\ud800") == "a\\x00b\\x7fc\\x9bd\\u2066e\\ud800"
    assert code("`rm -rf` \x1b") == "`` 'rm -rf' \\x1b ``"
    assert text("line 1\r\n\tline 2\x1b[31m \u202eevil") == "line 1\n\tline 2\\x1b[31m \\u202eevil"
    table = pd.DataFrame({"prompt": ["a\u202eb", None], "n": [1, 2]})
    shown = frame(table)
    assert shown["prompt"][0] == "a\\u202eb" and pd.isna(shown["prompt"][1]) and shown["n"].tolist() == [1, 2]
    assert table["prompt"][0] == "a\u202eb"  # the frame itself (downloads) is untouched
    assert tree({"error\x1b": ["a\u202eb", 1, None, {"k": "\x9b"}]}) == {"error\\x1b": ["a\\u202eb", 1, None, {"k": "\\x9b"}]}
    assert plot("<a href='http://x'>a & b</a> $x$ %{y}") == "&lt;a href='http://x'&gt;a &amp; b&lt;/a&gt; &#36;x&#36; %&#123;y}"


# ---- (3) the Host-header check on a real server ----------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int, Path]:
    port = _free_port()
    log = tmp_path / f"dashboard-{port}.log"
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "balpm", "dashboard", "--runs", str(runs_dir), "--port",
                                 str(port), *extra], stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
    return proc, port, log


def _wait_up(proc: subprocess.Popen, port: int, log: Path) -> None:
    t0 = time.time()
    while time.time() - t0 < 180:
        assert proc.poll() is None, log.read_text()[-2000:]
        if _status(port, f"127.0.0.1:{port}") == 200:
            return
        time.sleep(0.5)
    raise AssertionError("balpm dashboard did not start: " + log.read_text()[-2000:])


def _status(port: int, host: str | None, path: str = "/_stcore/health") -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _websocket(port: int, name: str) -> int:
    """HTTP status of a WebSocket handshake to Streamlit's stream whose Host is ``name:port`` (101: opened)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def handshake() -> int:
        try:  # the URI names the host (the Host header); the TCP connection goes to 127.0.0.1
            async with connect(f"ws://{name}:{port}/_stcore/stream", host="127.0.0.1", port=port,
                               subprotocols=["streamlit"], open_timeout=30):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(handshake())


def test_only_loopback_host_names_reach_the_server(tmp_path):
    proc, port, log = _start(tmp_path)
    wide, wide_port, wide_log = _start(tmp_path, "--host", "0.0.0.0", "--allow-host", "MyHost.lan")
    try:
        _wait_up(proc, port, log)
        for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "LOCALHOST", "localhost:9000"):
            assert _status(port, host) == 200, host
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", f"localhost.attacker.example:{port}",
                     f"127.0.0.1.nip.io:{port}", f"localhost:{port}@attacker.example", "myhost.lan", ""):
            assert _status(port, host) == 403, host
            assert _status(port, host, "/") == 403, host  # the page itself too
        assert _status(port, None) in (400, 403)  # no Host header at all: the HTTP parser or the guard refuses
        assert _websocket(port, "rebind.attacker.example") == 403
        assert _websocket(port, "localhost") == 101
        # bound to every interface: a warning paragraph, the named host allowed, others still refused
        _wait_up(wide, wide_port, wide_log)
        assert _status(wide_port, f"myhost.lan:{wide_port}") == 200 and _websocket(wide_port, "myhost.lan") == 101
        assert _status(wide_port, "other.lan") == 403 and _websocket(wide_port, "other.lan") == 403
    finally:
        for p in (proc, wide):
            p.terminate()
            p.wait(timeout=30)
    warning = wide_log.read_text()
    assert "WARNING: balpm dashboard is binding to 0.0.0.0" in warning and "NO authentication" in warning
    assert "myhost.lan" in warning and "WARNING" not in log.read_text()


def test_allow_host_must_be_a_bare_host_name(tmp_path, capsys):
    from balpm.cli import main

    for bad in ("http://myhost", "*.lan", "myhost:8501", "my host", ""):
        with pytest.raises(SystemExit) as exc:
            main(["dashboard", "--runs", str(tmp_path), "--allow-host", bad])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: --allow-host") and len(err.strip().splitlines()) == 1, bad
