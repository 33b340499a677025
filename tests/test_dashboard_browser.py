"""End to end in Debian's Chromium (headless, Playwright) against ``balpm dashboard`` on 127.0.0.1.

Runs made by the engine on the synthetic teaching world (with two ablation variants); the test walks
the lesson step by step, visits every page, steps the replay with the button and the slider, presses
play, clicks a point on a map and inspects it, switches between finished ablation variants, waits for
the plot itself to redraw each time, and saves a screenshot of every page under
``test-artifacts/screenshots/``.

Robust under load: every wait is on the app's state (the script's run state, skeletons gone, an element
or a title appearing), never on a wall-clock budget a loaded machine misses. ``HANG`` (5 minutes,
``BALPM_BROWSER_HANG_S``) only turns a hung app into a failure instead of a stuck test.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

HANG = float(os.environ.get("BALPM_BROWSER_HANG_S", "300"))  # a hung app, not a slow one (pytest-timeout: 900 s)

pytestmark = [
    pytest.mark.browser,
    # outside CI a machine without Chromium skips; in CI (setup.sh installs it) a missing browser fails
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                       reason="Debian chromium not installed at /usr/bin/chromium (bash setup.sh installs it)"),
]


@pytest.fixture(scope="module")
def private_tmp():
    """A folder of this module's own, outside pytest's ``/tmp/pytest-of-<user>/pytest-N`` folders: pytest
    keeps only the 3 newest of those, so on a machine where other pytest runs start meanwhile (a loaded
    machine: the whole suite, other engineers) the runs folder vanished under the running dashboard and
    the replay never reached its next pick ("No readable runs" on the page). Removed at teardown."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="balpm-browser-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def runs_root(private_tmp) -> Path:
    """Engine runs on the teaching world (or an existing runs folder: ``BALPM_BROWSER_RUNS``, e.g. to
    take the README's screenshots on longer runs)."""
    from balpm import loop
    from balpm.config import RunConfig

    if os.environ.get("BALPM_BROWSER_RUNS"):
        return Path(os.environ["BALPM_BROWSER_RUNS"]).resolve()
    root = private_tmp / "browser-runs"
    root.mkdir()
    cfg = RunConfig().replace(
        model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 8, "lr": 3e-3, "batch_size": 16,
               "init_std": 0.1, "device": "cpu"},
        loop={"initial": 20, "batch_size": 20, "rounds": 4})
    from balpm import ablations

    for seed in (0, 1):
        table, features = loop.load_inputs(cfg.replace(loop={"seed": seed}), progress=False)  # drawn per seed
        for policy in ("random", "bald", "balpm") if seed == 0 else ("random", "balpm"):
            loop.run(cfg.replace(acquisition={"policy": policy}, loop={"seed": seed}), root, table=table,
                     features=features, progress=False)
        for variant in ablations.variant_configs(cfg.replace(loop={"seed": seed}), "paper", [seed]):
            if variant.name.endswith(("no U", "H minimiser")):
                loop.run(variant, root, table=table, features=features, progress=False)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs_root, private_tmp):
    port = _free_port()
    log_path = private_tmp / "balpm-dashboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "balpm", "dashboard", "--runs", str(runs_root), "--port",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        url = f"http://127.0.0.1:{port}"
        t0 = time.time()
        while time.time() - t0 < 120:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            proc.terminate()
            raise AssertionError("balpm dashboard did not start: " + log_path.read_text()[-2000:])
        yield url
        proc.terminate()  # balpm dashboard stops its Streamlit child on SIGTERM
        assert proc.wait(timeout=30) is not None


def _idle(page, timeout: float = HANG) -> None:
    """Wait until the script has finished and every element has rendered (no skeletons, charts drawn)."""
    t0 = time.time()
    stable = 0
    while time.time() - t0 < timeout:
        state = page.evaluate("() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')")
        busy = page.locator("[data-testid='stSkeleton']").count()
        if state == "notRunning" and busy == 0:
            stable += 1
            if stable >= 4:
                return
        else:
            stable = 0
        time.sleep(0.25)
    raise AssertionError("the app did not become idle")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]')?.scrollHeight || 1000")
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 160, 5000)})
    page.mouse.move(2, 2)  # no hover label or plot toolbar in the picture
    time.sleep(1.5)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']").first.inner_text()


def _metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']", has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def _goto_page(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
    _idle(page)


def _replay_title(page) -> str:
    return page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)"
                         ".find(t => t.includes(' pick ')) || ''")


def _wait_replay_title(page, text: str, timeout: float = HANG) -> None:
    page.wait_for_function(
        "(s) => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(t => t.textContent.includes(s))",
        arg=text, timeout=timeout * 1000)


def test_every_page_in_chromium(server):
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    offsite: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(server)
        _idle(page)
        _no_errors(page)
        assert page.get_by_text("run folders").count() >= 1
        _shot(page, "01-runs")

        # ---- prompt space: maps, replay by button, slider and play -----------------------------
        _goto_page(page, "Prompt space")
        _no_errors(page)
        plots = page.locator(".js-plotly-plot")
        assert plots.count() >= 4
        assert page.locator(".js-plotly-plot canvas").count() >= 4  # WebGL scatter layers
        _wait_replay_title(page, " pick 1/")
        first = _metric(page, "current pick")
        page.get_by_role("button", name="next ▶").click()
        _wait_replay_title(page, " pick 2/")  # the figure itself redrew with the next pick
        _idle(page)
        second = _metric(page, "current pick")
        assert second != first
        slider = page.locator("[data-testid='stSlider']", has_text="greedy step").locator("input[type='range']").first
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        _wait_replay_title(page, " pick 5/")
        _idle(page)
        assert _metric(page, "current pick") not in (first, second)
        page.get_by_role("button", name="▶ play").click()
        _wait_replay_title(page, " pick 6/")  # advanced by the fragment's timer, no clicks (however slowly)
        page.get_by_role("button", name="⏸ pause").click()
        page.get_by_role("button", name="▶ play").wait_for(timeout=HANG * 1000)
        _idle(page)
        paused = _replay_title(page)
        n_done = int(paused.split(" pick ")[1].split(":")[0].split("/")[0])
        assert n_done >= 6
        for _ in range(3):  # paused stays paused: three idle checks later the figure shows the same pick
            _idle(page)
            time.sleep(1)
        assert _replay_title(page) == paused
        _shot(page, "02-prompt-space")

        # ---- select a point on the first map ---------------------------------------------------
        plots.first.scroll_into_view_if_needed()
        box = page.evaluate("""() => {
            const gd = document.querySelectorAll('.js-plotly-plot')[0];
            const tr = gd._fullData.findIndex(t => t.name.startsWith('acquired'));
            const t = gd._fullData[tr], L = gd._fullLayout;
            const r = gd.querySelector('.main-svg').getBoundingClientRect();
            const px = (tr_, i) => [L.xaxis.l2p(tr_.x[i]), L.yaxis.l2p(tr_.y[i])];
            // the acquired point farthest (in pixels) from every other spot, so that a click on a dense
            // map (real UMAP) cannot land on a neighbour. Comparisons that share a prompt sit on one spot
            // (within 2 px): those are one location, and the click may select any of them.
            const SAME = 2.0;
            let best = 0, bestGap = -1;
            for (let i = 0; i < t.x.length; i++) {
                const [xi, yi] = px(t, i);
                let gap = Infinity;
                for (const o of gd._fullData) {
                    if (!o.x || o.type === undefined) continue;
                    for (let j = 0; j < o.x.length; j++) {
                        if (o === t && j === i) continue;
                        const [xj, yj] = px(o, j);
                        const d = Math.hypot(xi - xj, yi - yj);
                        if (d > SAME) gap = Math.min(gap, d);
                    }
                }
                if (gap > bestGap) { bestGap = gap; best = i; }
            }
            const [bx, by] = px(t, best);
            const ids = [];
            for (const o of gd._fullData) {
                if (!o.x || o.type === undefined || !o.customdata) continue;
                for (let j = 0; j < o.x.length; j++) {
                    const [xj, yj] = px(o, j);
                    if (Math.hypot(bx - xj, by - yj) <= SAME) ids.push(Number(o.customdata[j]));
                }
            }
            return {x: r.left + L.xaxis._offset + bx, y: r.top + L.yaxis._offset + by, id: t.customdata[best], ids: ids};
        }""")
        page.mouse.move(box["x"], box["y"])
        time.sleep(0.5)
        page.mouse.click(box["x"], box["y"])
        page.get_by_text("point(s) selected").first.wait_for(timeout=HANG * 1000)
        _idle(page)
        page.locator("[data-testid='stPageLink'] a").first.click()
        _idle(page)
        _no_errors(page)
        assert page.get_by_text("Nothing selected yet").count() == 0
        assert page.locator("[data-testid='stDataFrame']").count() >= 1
        assert any(page.get_by_text(f"pool {i} ").count() >= 1 for i in box["ids"]), box  # an item at the clicked spot
        _shot(page, "06-inspect")

        # ---- the other pages -------------------------------------------------------------------
        for title, name in (("Anatomy of a batch", "03-batch-anatomy"), ("Learning curves", "04-learning-curves")):
            _goto_page(page, title)
            _no_errors(page)
            assert page.locator(".js-plotly-plot").count() >= 1
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            _shot(page, name)

        # ---- ablations: finished variants switch without a run, each with its paired verdict ----
        _goto_page(page, "Ablations")
        _no_errors(page)
        page.get_by_text("no U against balpm").first.wait_for(timeout=HANG * 1000)
        page.locator("[data-testid='stButtonGroup'] button", has_text="H minimiser").first.click()
        page.get_by_text("H minimiser against balpm").first.wait_for(timeout=HANG * 1000)
        _idle(page)
        assert page.get_by_text("2 paired seeds").count() >= 1
        # ---- one knob, this seed: flip the estimator to KL; the engine runs the variant in the background ----
        page.locator("[data-testid='stRadio']", has_text="estimator").get_by_text("KL", exact=True).click()
        page.get_by_role("button", name="Run or reuse this variant").click()
        page.locator("h3", has_text="→").first.wait_for(timeout=HANG * 1000)  # live progress, then the comparison
        _idle(page)
        _no_errors(page)
        assert page.get_by_text("estimator").count() >= 1 and page.locator(".js-plotly-plot").count() >= 2
        _shot(page, "05-ablations")

        # ---- the lesson, step by step with "next" ----------------------------------------------
        _goto_page(page, "Lesson")
        step = 0
        while True:
            step += 1
            page.locator("h3", has_text=f"{step}. ").first.wait_for(timeout=HANG * 1000)
            _idle(page)
            _no_errors(page)
            assert page.locator(".js-plotly-plot").count() >= 1 or step == 6
            assert page.locator("[data-testid='stPageLink']").count() >= 1  # every step links to its page
            _shot(page, f"lesson-{step}")
            nxt = page.get_by_role("button", name="next ▶")
            if nxt.is_disabled():
                break
            nxt.click()
        assert step == 6
        browser.close()
    assert not console_errors, console_errors
    assert not offsite, f"the page fetched from outside 127.0.0.1: {offsite[:5]}"
    for name in ("01-runs", "02-prompt-space", "03-batch-anatomy", "04-learning-curves", "05-ablations", "06-inspect",
                 *(f"lesson-{i}" for i in range(1, 7))):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
