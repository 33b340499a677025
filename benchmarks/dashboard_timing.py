"""Dashboard timings (server side), printed as JSON (the last line of stdout), not asserted.

1. Time to first chart with cached runs: Streamlit's AppTest runs the Prompt space and Learning curves
   pages on a runs folder (the engine makes a small one on the teaching world unless ``--runs`` is
   given). "cold" is the first page run in a fresh process (projection cache on disk, nothing in
   memory), "warm" a rerun with Streamlit's caches filled.
2. One replay step at 10k and 92k pool points: the work the replay fragment does per pick (replayed
   counts and scores, the WebGL figure, its JSON serialisation as st.plotly_chart sends it), on a real
   BAL-PM selection (``select_balpm``, batch 320, k 13) over ``paper_world`` prompt features.

4. ``--browser``: the same in headless Chromium (Playwright, /usr/bin/chromium) against ``balpm dashboard``:
   page ready (navigation click until the script is idle and every chart is drawn) for the Lesson,
   Prompt space and Ablations pages; one replay step redrawn (the "next" button until the figure's
   title shows the next pick); one ablation toggle (a finished variant's button until its paired
   verdict is on screen and its curve is in the chart, checked every animation frame). Medians over
   ``--steps`` repetitions (at most 10 for pages and toggles).

3. ``--map-points N`` (e.g. 92000): the first Prompt space chart at paper scale. A run folder is made
   by the engine (policy random, a tiny reward model: the model is not what is timed) on
   ``paper_world(n, d=--map-dim, n_prompts=--map-prompts)`` with the pool holding N comparisons; then the
   map is fitted as ``balpm sweep`` does after its runs (``projection.precompute``: float32 PCA to 50
   dimensions, then UMAP; seconds of each), and the Prompt space page is run cold in a fresh process
   (AppTest, nothing in memory, the map on disk) and warm.

    python benchmarks/dashboard_timing.py [--runs DIR] [--sizes 10000,92000] [--dim 32] [--steps 20]
    python benchmarks/dashboard_timing.py --skip-pages --sizes "" --map-points 92000 --map-dim 4096
    python benchmarks/dashboard_timing.py --browser --skip-pages --sizes "" [--runs DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_runs(root: Path) -> None:
    """Random, BALD and BAL-PM on two seeds of the teaching world (tiny model), via the engine."""
    from balpm.config import RunConfig
    from balpm.experiment import loop

    cfg = RunConfig().replace(model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 4, "lr": 3e-3,
                                     "batch_size": 16, "device": "cpu"},
                              loop={"initial": 30, "batch_size": 30, "rounds": 5})
    from balpm.experiment import ablations

    for seed in (0, 1):
        table, features = loop.load_inputs(cfg.replace(loop={"seed": seed}), progress=False)  # drawn per seed
        for policy in ("random", "bald", "balpm"):
            loop.run(cfg.replace(acquisition={"policy": policy}, loop={"seed": seed}), root, table=table,
                     features=features, progress=False)
        for variant in ablations.variant_configs(cfg.replace(loop={"seed": seed}), "paper", [seed]):
            if variant.name.endswith(("no U", "H minimiser")):  # two finished variants to toggle between
                loop.run(variant, root, table=table, features=features, progress=False)


def time_pages(root: Path, pages: tuple[str, ...] = ("views/prompt_space.py", "views/learning_curves.py",
                                                     "views/batch_anatomy.py")) -> dict:
    """AppTest run time of the chart pages, cold (first run in this process) and warm."""
    from streamlit.testing.v1 import AppTest

    from balpm.cli.dashboard import dashboard_app_path

    os.environ["BALPM_RUNS_DIR"] = str(root)
    at = AppTest.from_file(str(dashboard_app_path()), default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    out = {"runs_page_first_s": round(time.perf_counter() - t0, 3)}
    print(f"  runs page, first run of the process (imports included): {out['runs_page_first_s']:6.2f} s", file=sys.stderr)
    for page in pages:
        at.switch_page(page)
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        charts = len(at.get("plotly_chart"))
        assert not at.exception, [e.message for e in at.exception]
        out[page] = {"charts": charts, "cold_s": round(cold, 3), "warm_s": round(warm, 3)}
        print(f"  {page:28s} {charts} charts: cold {cold:6.2f} s, warm (cached) {warm:6.2f} s", file=sys.stderr)
    return out


def make_map_run(root: Path, n_pool: int, dim: int, n_prompts: int) -> dict:
    """One engine run whose pool holds ``n_pool`` comparisons of the paper-shape world at D = ``dim``
    (prompt features; the pair features the tiny model sees are cut to 16 dimensions to save memory)."""
    import dataclasses

    from balpm.config import RunConfig
    from balpm.data.synthetic import paper_world
    from balpm.experiment import loop

    n = round(n_pool / 0.96)
    t0 = time.perf_counter()
    table, feats = paper_world(n, dim, seed=0, n_prompts=n_prompts, ood_fraction=0.0, ratios=(0.96, 0.02, 0.02))
    small = np.ascontiguousarray(feats.pairs_N_2_D[:, :, :16])
    feats = dataclasses.replace(feats, pairs_N_2_D=small)
    gen = time.perf_counter() - t0
    cfg = RunConfig().replace(
        model={"hidden": (8,), "ensemble_size": 2, "max_epochs": 1, "batch_size": 64, "device": "cpu"},
        acquisition={"policy": "random"}, loop={"initial": 320, "batch_size": 320, "rounds": 2})
    t0 = time.perf_counter()
    loop.run(cfg, root, table=table, features=feats, progress=False)
    return {"pool_points": int((table["split"] == "train").sum()), "prompts": int(feats.prompts_P_D.shape[0]),
            "dim": dim, "world_seconds": round(gen, 1), "run_seconds": round(time.perf_counter() - t0, 1)}


def time_map(n_pool: int, dim: int, n_prompts: int) -> dict:
    """The paper-scale first Prompt space chart: fit as the sweep does, then the page cold and warm."""
    from balpm.experiment import projection

    root = Path(tempfile.mkdtemp(prefix="balpm-bench-map-"))
    try:
        out = make_map_run(root, n_pool, dim, n_prompts)
        t0 = time.perf_counter()
        done = projection.precompute(root)
        out["precompute_seconds"] = round(time.perf_counter() - t0, 1)
        (data_hash, res), = done.items()
        out["method"] = res.get("method", res.get("error"))
        meta = root / "_datasets" / data_hash / f"projection-{out['method']}.json"
        if meta.is_file():
            out["fit_seconds"] = json.loads(meta.read_text()).get("seconds")
        # the page in a fresh process: nothing in memory, the map on disk (what a user sees after a sweep)
        proc = subprocess.run([sys.executable, __file__, "--runs", str(root), "--pages", "views/prompt_space.py",
                               "--sizes", ""], capture_output=True, text=True, timeout=1800, check=False)
        try:
            pages = json.loads(proc.stdout.strip().splitlines()[-1])["pages"]
        except (ValueError, IndexError, KeyError):
            raise SystemExit("page timing failed: " + proc.stderr[-2000:]) from None
        out["prompt_space_first_chart_cold_s"] = pages["views/prompt_space.py"]["cold_s"]
        out["prompt_space_warm_s"] = pages["views/prompt_space.py"]["warm_s"]
        out["app_first_run_s"] = pages["runs_page_first_s"]
        return out
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def replay_inputs(n: int, dim: int, batch: int = 320, k: int = 13, seed: int = 0):
    """pool_scores / increments / picks / coords of one real BAL-PM round on n pool items."""
    from balpm.acquisition import greedy_select, prepare_balpm
    from balpm.data.synthetic import paper_world

    _, feats = paper_world(n + 320, dim, seed=seed)
    table_prompts = np.asarray(feats.prompts_P_D, dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(table_prompts), size=n + 320)
    pool, labelled = table_prompts[rows[:n]], table_prompts[rows[n:]]
    u = rng.gamma(2.0, 0.02, size=n)
    t0 = time.perf_counter()
    rnd = prepare_balpm(u, pool, labelled, batch, beta=0.01, k=k, d=1.0)
    sel = greedy_select(rnd, batch)
    select_s = time.perf_counter() - t0
    tab = rnd.pool_table()
    scores = pd.DataFrame({"pool_index": np.arange(n), "pair_id": [f"p{i}" for i in range(n)],
                           "prompt_id": [f"q{r}" for r in rows[:n]]})
    for c in tab.columns:
        scores[c] = tab[c].to_numpy()
    inc = pd.DataFrame({"step": sel.increments["step"], "pool_index": sel.increments["index"]})
    picks = sel.steps.rename(columns={"index": "pool_index"}).assign(round=0)
    picks["prompt_id"] = scores["prompt_id"].to_numpy()[picks["pool_index"]]
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    coords = pd.DataFrame({"pool_index": scores["pool_index"], "prompt_id": scores["prompt_id"], "x": xy[:, 0], "y": xy[:, 1]})
    return scores, inc, picks, coords, select_s


def time_replay(n: int, dim: int, steps: int) -> dict:
    """Per-step server time of the replay at n pool points."""
    import plotly.io as pio
    from balpm_dashboard import frames, plots

    scores, inc, picks, coords, select_s = replay_inputs(n, dim)
    t0 = time.perf_counter()
    inc_pos = frames.increments_by_position(scores, inc)  # once per round (cached by the page)
    index_s = time.perf_counter() - t0
    ranges = frames.axis_ranges([coords])
    compute, figure, serial, sizes = [], [], [], []
    for s in np.linspace(0, len(picks) - 1, steps).astype(int):
        t0 = time.perf_counter()
        rep = frames.replay_step(scores, inc, picks, int(s), beta=0.01, d=1.0, inc_pos=inc_pos)
        t1 = time.perf_counter()
        fig = plots.replay_map(coords, rep.frame, color_by="final", ranges=ranges, method="umap")
        t2 = time.perf_counter()
        spec = pio.to_json(fig, validate=False)
        t3 = time.perf_counter()
        compute.append(t1 - t0)
        figure.append(t2 - t1)
        serial.append(t3 - t2)
        sizes.append(len(spec))
    total = np.add(np.add(compute, figure), serial)
    print(f"  {n:>6d} pool points ({len(inc)} count increments over {len(picks)} picks; selection itself "
          f"{select_s:.1f} s, increment index {index_s * 1e3:.0f} ms once per round)", file=sys.stderr)
    print(f"         per step: replay {np.median(compute) * 1e3:6.1f} ms + figure {np.median(figure) * 1e3:6.1f} ms"
          f" + JSON {np.median(serial) * 1e3:6.1f} ms = {np.median(total) * 1e3:6.1f} ms median"
          f" (max {np.max(total) * 1e3:.1f} ms), {np.median(sizes) / 1e6:.2f} MB sent", file=sys.stderr)
    return {"points": n, "step_ms_median": round(float(np.median(total)) * 1e3, 1),
            "step_ms_max": round(float(np.max(total)) * 1e3, 1), "mb_sent": round(float(np.median(sizes)) / 1e6, 2)}


TOGGLED_JS = """(name) => [...document.querySelectorAll('[data-testid=stAlert]')].some(e => e.innerText.includes(name + ' against '))
    && [...document.querySelectorAll('.js-plotly-plot')].some(gd => (gd._fullData || []).some(
        t => (t.name || '').startsWith(name + ' (')))"""


def _idle(page, timeout: float = 600.0) -> None:
    """Until the script is not running, no skeleton is left and every plotly chart has drawn (3 checks)."""
    t0, stable = time.perf_counter(), 0
    while time.perf_counter() - t0 < timeout:
        ok = page.evaluate("""() => {
            const app = document.querySelector('[data-testid=stApp]');
            const charts = document.querySelectorAll('.js-plotly-plot').length;
            return app?.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-testid=stSkeleton]')
                && document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts; }""")
        stable = stable + 1 if ok else 0
        if stable >= 3:
            return
        time.sleep(0.05)
    raise RuntimeError("the app did not become idle")


def time_browser(root: Path, reps: int = 10) -> dict:
    """Page ready, replay step redrawn and ablation toggle in headless Chromium against ``balpm dashboard``."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "balpm", "dashboard", "--runs", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
    url = f"http://127.0.0.1:{port}"
    out: dict = {}
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            _idle(page)

            def goto(title: str) -> float:
                t = time.perf_counter()
                page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
                page.wait_for_function("() => document.querySelector('[data-testid=stApp]')"
                                       "?.getAttribute('data-test-script-state') === 'running'", timeout=60_000)
                _idle(page)
                return time.perf_counter() - t

            ready: dict[str, list[float]] = {}
            for _ in range(max(1, min(reps, 10) // 2)):
                for title in ("Lesson", "Prompt space", "Ablations"):
                    try:
                        ready.setdefault(title, []).append(goto(title))
                    except Exception:  # noqa: BLE001 - a page that ran too fast to be seen running: idle is enough
                        _idle(page)
            out["page_ready_s"] = {k: round(float(np.median(v)), 3) for k, v in ready.items()}
            goto("Prompt space")
            steps = []
            title_js = ("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)"
                        ".find(t => t.includes(' pick ')) || ''")
            for _ in range(reps):
                before = page.evaluate(title_js)
                if not before:
                    break
                k = int(before.split(" pick ")[1].split("/")[0])
                t = time.perf_counter()
                page.get_by_role("button", name="next ▶").click()
                page.wait_for_function(f"() => ({title_js})().includes(' pick {k + 1}/')", timeout=120_000)
                steps.append(time.perf_counter() - t)
                _idle(page)
            out["replay_step_redrawn_s"] = {"median": round(float(np.median(steps)), 3), "max": round(float(np.max(steps)), 3),
                                            "n": len(steps)} if steps else None
            goto("Ablations")
            names = page.locator("[data-testid='stButtonGroup'] button").all_inner_texts()
            toggles = []
            for i in range(min(reps, 10)):
                name = names[(i + 1) % len(names)] if names else None
                if name is None or len(names) < 2:
                    break
                t = time.perf_counter()
                page.locator("[data-testid='stButtonGroup'] button", has_text=name).first.click()
                # switched: the variant's verdict on screen and its curve in the chart, checked every animation
                # frame (a locator's wait_for polls every 500 ms after its first tries: it read ~1.1 s for
                # toggles whose verdict had shown at 0.4-0.8 s)
                page.wait_for_function(TOGGLED_JS, arg=name, polling="raf", timeout=120_000)
                toggles.append(time.perf_counter() - t)
                _idle(page)
            out["ablation_toggle_s"] = {"median": round(float(np.median(toggles)), 3),
                                        "max": round(float(np.max(toggles)), 3), "n": len(toggles)} if toggles else None
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    """Parse arguments, time, print one JSON object as the last line of stdout (progress on stderr)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=None, help="runs folder (default: make a small one)")
    ap.add_argument("--sizes", default="10000,92000", help="replay benchmark pool sizes ('' to skip)")
    ap.add_argument("--dim", type=int, default=32, help="prompt feature dimension of the replay benchmark")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument("--browser", action="store_true", help="also time page ready, replay step and ablation toggle in Chromium")
    ap.add_argument("--pages", default="views/prompt_space.py,views/learning_curves.py,views/batch_anatomy.py")
    ap.add_argument("--map-points", type=int, default=0, help="paper-scale first map: pool points (e.g. 92000)")
    ap.add_argument("--map-dim", type=int, default=4096)
    ap.add_argument("--map-prompts", type=int, default=36300)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    result: dict = {"cores": os.cpu_count()}
    if not args.skip_pages or args.browser:
        if args.runs is None:
            tmp = Path(tempfile.mkdtemp(prefix="balpm-bench-runs-"))
            t0 = time.perf_counter()
            make_runs(tmp)
            print(f"made 10 teaching-world runs (2 ablation variants) with the engine in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            root = tmp
        else:
            root = args.runs
        try:
            if not args.skip_pages:
                print("time to first chart (server side, AppTest):", file=sys.stderr)
                result["pages"] = time_pages(root, tuple(p for p in args.pages.split(",") if p))
            if args.browser:
                print("in headless Chromium (page ready, replay step redrawn, ablation toggle):", file=sys.stderr)
                result["browser"] = time_browser(root, args.steps)
        finally:
            if args.runs is None:
                import shutil

                shutil.rmtree(root, ignore_errors=True)
    if args.sizes:
        print("one replay step (server side):", file=sys.stderr)
        result["replay"] = [time_replay(int(x), args.dim, args.steps) for x in args.sizes.split(",") if x]
    if args.map_points:
        print(f"first Prompt space chart at {args.map_points} pool points, D = {args.map_dim}:", file=sys.stderr)
        result["map"] = time_map(args.map_points, args.map_dim, args.map_prompts)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
