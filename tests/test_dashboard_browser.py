"""End to end in Debian's Chromium (headless, Playwright) against ``balpm dashboard`` on 127.0.0.1.

Runs made by the engine on the synthetic teaching world (with two ablation variants); one server
(``dashboard_server`` in conftest.py) and one browser page serve every check: the test switches between
finished ablation variants, starts a one-knob variant for every seed of the base, walks the lesson step
by step, then steps the replay with the button and the slider and presses play (the Lesson-then-play
sequence), clicks a point on a map and inspects it, visits every page, reads the variant's verdict over
all seeds, waits for the plot itself to redraw each time, and saves a screenshot of every page under
``test-artifacts/screenshots/``.

Robust under load and quick: every wait is on the app's state (the script's run state watched every
20-100 ms, skeletons gone, charts drawn, an element or a title appearing), never a fixed sleep standing in
for one and never a wall-clock budget a loaded machine misses (one 2 s pause checks that a paused replay
stays paused). ``HANG`` (5 minutes, ``BALPM_BROWSER_HANG_S``) only turns a hung app into a failure
instead of a stuck test. The helpers :func:`idle`, :func:`act`, :func:`goto` and :func:`shot` serve the
hostile-folder browser test too.
"""
from __future__ import annotations

import os
import time
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
    from balpm.config import RunConfig
    from balpm.experiment import loop

    if os.environ.get("BALPM_BROWSER_RUNS"):
        return Path(os.environ["BALPM_BROWSER_RUNS"]).resolve()
    root = private_tmp / "browser-runs"
    root.mkdir()
    cfg = RunConfig().replace(
        model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 4, "lr": 3e-3, "batch_size": 16,
               "init_std": 0.1, "device": "cpu"},
        loop={"initial": 20, "batch_size": 20, "rounds": 4})
    from balpm.experiment import ablations

    for seed in (0, 1):
        table, features = loop.load_inputs(cfg.replace(loop={"seed": seed}), progress=False)  # drawn per seed
        for policy in ("random", "bald", "balpm") if seed == 0 else ("random", "balpm"):
            loop.run(cfg.replace(acquisition={"policy": policy}, loop={"seed": seed}), root, table=table,
                     features=features, progress=False)
        for variant in ablations.variant_configs(cfg.replace(loop={"seed": seed}), "paper", [seed]):
            if variant.name.endswith(("no U", "H minimiser")):
                loop.run(variant, root, table=table, features=features, progress=False)
    return root


@pytest.fixture(scope="module")
def server(runs_root, dashboard_server) -> str:
    return dashboard_server(runs_root)  # tests/conftest.py


SCRIPT_STATE = "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')"
IDLE_JS = f"""() => {{
    const charts = document.querySelectorAll('.js-plotly-plot').length;
    return {SCRIPT_STATE} === 'notRunning' && !document.querySelector('[data-testid=stSkeleton]')
        && document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts; }}"""


def idle(page, timeout: float = HANG) -> None:
    """Until the script is not running, no skeleton is left and every plotly chart has drawn, on three
    checks 0.1 s apart (the app's own state; ``timeout`` only turns a hung app into a failure)."""
    t0, stable = time.time(), 0
    while stable < 3:
        if time.time() - t0 > timeout:
            raise AssertionError("the app did not become idle")
        stable = stable + 1 if page.evaluate(IDLE_JS) else 0
        time.sleep(0.1)


def act(page, action) -> None:
    """Do ``action`` (a click, a key press) and wait for the rerun it starts to be over: first for the script
    to leave ``notRunning`` (watched every 20 ms; a rerun too short to be seen lets this pass after 3 s), then
    for :func:`idle`."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    action()
    try:
        page.wait_for_function(f"() => {SCRIPT_STATE} !== 'notRunning'", polling=20, timeout=3000)
    except PlaywrightTimeout:
        pass
    idle(page)


def goto(page, title: str) -> None:
    """Click ``title`` in the sidebar; wait for the page's heading and for :func:`idle`."""
    act(page, lambda: page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click())
    page.locator("h1", has_text=title).first.wait_for(timeout=HANG * 1000)
    idle(page)


def shot(page, path: Path) -> Path:
    """A screenshot of the whole main column (the viewport grown to its height; its width, and so the
    charts' layout, unchanged), with the mouse off the charts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]')?.scrollHeight || 1000")
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 160, 5000)})
    page.mouse.move(2, 2)  # no hover label or plot toolbar in the picture
    idle(page)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})
    return path


def _shot(page, name: str) -> None:
    shot(page, SHOTS / f"{name}.png")


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']").first.inner_text()


def _metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']", has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` of the form widget ``label``: a radio, or a select box (the knob widgets come from the
    policy's knob class, so either may show a choice)."""
    # by the widget's own label, exactly: a select box whose options or value merely mention the label (a run
    # named "balpm estimator=kl" in the base-run box) must not be taken for it
    named = page.locator("[data-testid='stWidgetLabel']").get_by_text(label, exact=True)
    radio = page.locator("[data-testid='stRadio']").filter(has=named)
    if radio.count():
        radio.get_by_text(option, exact=True).click()
        return
    box = page.locator("[data-testid='stSelectbox']").filter(has=named).first
    # Streamlit's select box is a searchable combo box: a click on it only focuses its text input; its
    # ArrowDown shows the options (measured: a click shows none)
    field = box.get_by_role("combobox")
    field.click()
    field.press("ArrowDown")
    page.get_by_role("option", name=option, exact=True).click()


REPLAY_TITLE = ("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)"
                ".find(t => t.includes(' pick ')) || ''")


def _replay_title(page) -> str:
    return page.evaluate(REPLAY_TITLE)


def _wait_pick(page, at_least: int, timeout: float = HANG) -> int:
    """Until the replay figure itself shows pick ``at_least`` or later (play skips picks when a redraw takes
    longer than a pick's second: waiting for one exact pick missed it on a loaded machine); returns the pick."""
    page.wait_for_function(f"() => {{ const t = ({REPLAY_TITLE})(); return t.includes(' pick ') "
                           f"&& parseInt(t.split(' pick ')[1]) >= {int(at_least)}; }}", timeout=timeout * 1000)
    return int(_replay_title(page).split(" pick ")[1].split("/")[0])


def test_every_page_in_chromium(server):
    """One Chromium page walks the whole app in the order a teacher would, so that one server and one
    browser serve every check: the Runs page; the Ablations page (a finished variant switched, then a
    one-knob variant started for every seed of the base, which runs in the background meanwhile); the
    lesson step by step; then Prompt space (the "Lesson first, then play" sequence that once failed to
    play: next, slider, play, pause); a map point inspected; Anatomy and Learning curves; back to
    Ablations for the variant's verdict over all seeds. No page error, nothing fetched off 127.0.0.1."""
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
        idle(page)
        _no_errors(page)
        assert page.get_by_text("run folders").count() >= 1
        _shot(page, "01-runs")

        # ---- ablations: finished variants switch without a run, each with its paired verdict ----
        goto(page, "Ablations")
        _no_errors(page)
        page.get_by_text("no U against balpm").first.wait_for(timeout=HANG * 1000)
        act(page, lambda: page.locator("[data-testid='stButtonGroup'] button", has_text="H minimiser").first.click())
        page.get_by_text("H minimiser against balpm").first.wait_for(timeout=HANG * 1000)
        assert page.get_by_text("2 paired seeds").count() >= 1
        # ---- one knob: the estimator flipped to KL runs for EVERY seed of the base, in the background ----
        _choose(page, "estimator", "KL")
        act(page, lambda: page.get_by_role("button", name="Run or reuse this variant").click())
        page.get_by_text("started ablation KL x 2 seeds").first.wait_for(timeout=HANG * 1000)
        _no_errors(page)

        # ---- the lesson, step by step with "next" (opened before Prompt space: the play sequence) ----
        goto(page, "Lesson")
        step = 0
        while True:
            step += 1
            page.locator("h3", has_text=f"{step}. ").first.wait_for(timeout=HANG * 1000)
            idle(page)
            _no_errors(page)
            assert page.locator(".js-plotly-plot").count() >= 1 or step == 6
            assert page.locator("[data-testid='stPageLink']").count() >= 1  # every step links to its page
            _shot(page, f"lesson-{step}")
            nxt = page.get_by_role("button", name="next ▶")
            if nxt.is_disabled():
                break
            act(page, nxt.click)
        assert step == 6

        # ---- prompt space: maps, replay by button, slider and play -----------------------------
        goto(page, "Prompt space")
        _no_errors(page)
        plots = page.locator(".js-plotly-plot")
        assert plots.count() >= 4
        assert page.locator(".js-plotly-plot canvas").count() >= 4  # WebGL scatter layers
        assert _wait_pick(page, 1) == 1
        first = _metric(page, "current pick")
        act(page, page.get_by_role("button", name="next ▶").click)
        assert _wait_pick(page, 2) == 2  # the figure itself redrew with the next pick
        second = _metric(page, "current pick")
        assert second != first
        slider = page.locator("[data-testid='stSlider']", has_text="greedy step").locator("input[type='range']").first
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        assert _wait_pick(page, 5) == 5
        idle(page)
        assert _metric(page, "current pick") not in (first, second)
        page.get_by_role("button", name="▶ play").click()
        _wait_pick(page, 6)  # advanced by the fragment's timer, no clicks (however slowly)
        page.get_by_role("button", name="⏸ pause").click()
        page.get_by_role("button", name="▶ play").wait_for(timeout=HANG * 1000)
        idle(page)
        paused = _replay_title(page)
        n_done = int(paused.split(" pick ")[1].split(":")[0].split("/")[0])
        assert n_done >= 6
        time.sleep(2.0)  # play shows a pick a second: paused, two seconds later the figure shows the same pick
        idle(page)
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
        page.locator(".hoverlayer .hovertext").first.wait_for(timeout=HANG * 1000)  # plotly found the point
        page.mouse.click(box["x"], box["y"])
        page.get_by_text("point(s) selected").first.wait_for(timeout=HANG * 1000)
        idle(page)
        act(page, page.locator("[data-testid='stPageLink'] a").first.click)
        page.locator("h1", has_text="Inspect a triple").first.wait_for(timeout=HANG * 1000)
        idle(page)
        _no_errors(page)
        assert page.get_by_text("Nothing selected yet").count() == 0
        assert page.locator("[data-testid='stDataFrame']").count() >= 1
        assert any(page.get_by_text(f"pool {i} ").count() >= 1 for i in box["ids"]), box  # an item at the clicked spot
        _shot(page, "06-inspect")

        # ---- the other pages -------------------------------------------------------------------
        for title, name in (("Anatomy of a batch", "03-batch-anatomy"), ("Learning curves", "04-learning-curves")):
            goto(page, title)
            _no_errors(page)
            assert page.locator(".js-plotly-plot").count() >= 1
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            _shot(page, name)

        # ---- back to the variant started above: its verdict over every seed of the base ---------
        goto(page, "Ablations")
        page.locator("h3", has_text="→").first.wait_for(timeout=HANG * 1000)  # live progress, then the comparison
        idle(page)
        _no_errors(page)
        page.get_by_text("KL against balpm").first.wait_for(timeout=HANG * 1000)
        verdicts = page.locator("[data-testid='stAlert']", has_text="KL against balpm").all_inner_texts()
        assert any("2 paired seeds" in v for v in verdicts), verdicts
        assert page.get_by_text("estimator").count() >= 1 and page.locator(".js-plotly-plot").count() >= 2
        _shot(page, "05-ablations")
        browser.close()
    assert not console_errors, console_errors
    assert not offsite, f"the page fetched from outside 127.0.0.1: {offsite[:5]}"
    for name in ("01-runs", "02-prompt-space", "03-batch-anatomy", "04-learning-curves", "05-ablations", "06-inspect",
                 *(f"lesson-{i}" for i in range(1, 7))):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
