"""Every dashboard page in Streamlit's AppTest, on run folders the engine writes in this test.

The fixture runs the real loop on the synthetic teaching world at a tiny scale (hidden (32, 8), K 3,
3 rounds, batch 20): random, BALD and BAL-PM on seed 0, BAL-PM on seed 1, a run whose policy fails in
round 1 (state ``failed``), a run whose process is killed in round 1 (state ``running`` with a dead
pid: half-written) and a folder whose creation was interrupted (``broken``). No JSON is hand-written.
"""
from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from balpm.experiment import loop, runs
from balpm.config import RunConfig

APP = REPO / "dashboard" / "app.py"
#: pages with a test file of their own (they need a teaching world, not the runs of this fixture)
OWN_TESTS = {"views/lesson.py": "test_dashboard_lesson.py", "views/worlds.py": "test_dashboard_worlds.py"}


def app_pages() -> tuple[str, ...]:
    """The page files of ``dashboard/app.py``'s ``PAGES`` (its ``st.Page("views/...")`` calls, in order), read
    from the source: the app itself is a Streamlit script, not importable."""
    tree = ast.parse(APP.read_text(encoding="utf-8"))
    return tuple(node.args[0].value for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page" and node.args
                 and isinstance(node.args[0], ast.Constant))


PAGES = tuple(p for p in app_pages() if p not in OWN_TESTS)
TINY = RunConfig().replace(
    model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
    loop={"initial": 20, "batch_size": 20, "rounds": 3},
)


class _Failing:
    """Wraps a real policy; ``select`` raises (failed run) or kills the process (half-written run)."""

    def __init__(self, inner, on_call: int, kill: bool = False):
        self.inner, self.on_call, self.kill, self.calls = inner, on_call, kill, 0
        self.name = inner.name
        if hasattr(inner, "pool_table"):
            self.pool_table = inner.pool_table

    def select(self, state, batch_size, rng):
        self.calls += 1
        if self.calls >= self.on_call:
            if self.kill:
                os._exit(9)
            raise RuntimeError("simulated failure in the policy")
        return self.inner.select(state, batch_size, rng)


def _run_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    table, features = loop.load_inputs(TINY, progress=False)  # what loop.run loads for this config, once
    for policy, seed in (("random", 0), ("bald", 0), ("balpm", 0), ("balpm", 1)):
        loop.run(TINY.replace(acquisition={"policy": policy}, loop={"seed": seed}), root, table=table,
                 features=features, progress=False)
    from balpm.acquisition import make_policy

    failing = TINY.replace(acquisition={"policy": "bald"}, loop={"seed": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "_make_policy", lambda cfg: _Failing(make_policy(cfg.acquisition), on_call=2))
        with pytest.raises(RuntimeError, match="simulated failure"):
            loop.run(failing, root, table=table, features=features, progress=False)
    killed = TINY.replace(acquisition={"policy": "balpm"}, loop={"seed": 3})
    script = textwrap.dedent(inspect.getsource(_Failing)) + textwrap.dedent(f"""
        import os
        from balpm.experiment import loop
        from balpm.acquisition import make_policy
        from balpm.config import RunConfig
        loop._make_policy = lambda cfg: _Failing(make_policy(cfg.acquisition), on_call=2, kill=True)
        loop.run(RunConfig.from_yaml({killed.to_yaml()!r}), {str(root)!r}, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 9, proc.stderr[-2000:]
    # a run folder whose creation was interrupted: its config is there, its status never written
    broken = root / "balpm-s4-interrupted"
    broken.mkdir()
    shutil.copy(root / runs.default_run_id(killed) / "config.yaml", broken / "config.yaml")
    return root


def _app(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _plain(text: str) -> str:
    """Markdown source as read: untrusted text is escaped by ``untrusted.md`` (backslashes, and a word
    joiner after ``:`` and ``@``); drop the escapes."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def _texts(elements) -> str:
    return " ".join(_plain(e.value) for e in elements)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_fixture_states_are_what_the_engine_wrote(runs_root):
    states = {i.run_id: i for i in runs.list_runs(runs_root)}
    assert sorted(i.state for i in states.values()) == ["broken", "complete", "complete", "complete", "complete",
                                                        "failed", "running"]
    killed = next(i for i in states.values() if i.state == "running")
    assert killed.alive is False and killed.last_round == 0


def test_runs_page_lists_every_state_and_never_crashes(runs_root, monkeypatch):
    at = _app(runs_root, monkeypatch)
    _ok(at)
    assert _metric(at, "run folders") == "7"
    assert (_metric(at, "complete"), _metric(at, "failed"), _metric(at, "running"), _metric(at, "broken")) == \
        ("4", "1", "1", "1")
    table = at.dataframe[0].value
    assert set(table["run"]) == set(_run_dirs(runs_root))
    assert table.set_index("run").loc["balpm-s4-interrupted", "state"] == "broken"
    warnings = _texts(at.warning)
    errors = _texts(at.error)
    assert "status.json missing" in warnings and "process gone" in warnings
    assert "simulated failure" in errors
    # the compare picker: the default is every readable run of the setting
    assert set(at.session_state["compare_runs"]) == {i.run_id for i in runs.list_runs(runs_root)
                                                     if i.state != "broken"}
    at.multiselect(key="cmp_labels").set_value(["balpm"]).run()
    _ok(at)
    assert all(r.startswith("balpm") for r in at.session_state["compare_runs"])


def test_typed_paths_cannot_leave_the_runs_folder(runs_root, monkeypatch, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "do-not-show"}')
    at = _app(runs_root, monkeypatch)
    for bad in (str(secret), "../" * 8 + str(secret).lstrip("/"), "balpm-s0-x/../../secret.json"):
        at.text_input(key="typed_path").set_value(bad).run()
        _ok(at)
        assert "outside the runs folder" in _texts(at.error), bad
        assert not any("do-not-show" in c.value for c in at.code)
    rid = runs.default_run_id(TINY.replace(acquisition={"policy": "bald"}, loop={"seed": 0}))
    at.text_input(key="typed_path").set_value(f"{rid}/status.json").run()
    assert any('"state": "complete"' in c.value for c in at.code)


def test_the_page_list_is_the_apps():
    """Every page of app.PAGES is rendered here or has its own test file; the list is read, not copied."""
    pages = app_pages()
    assert len(pages) == len(set(pages)) >= 6 and all((APP.parent / p).is_file() for p in pages)
    assert set(pages) == set(PAGES) | set(OWN_TESTS)
    assert all((REPO / "tests" / f).is_file() for f in OWN_TESTS.values())


def test_every_page_renders_on_the_engine_runs(runs_root, monkeypatch):
    at = _app(runs_root, monkeypatch)
    for page in PAGES:
        at.switch_page(page).run()
        _ok(at)
        assert at.title[0].value
    # prompt space: one map per policy on the seed (side by side) plus the replay map
    at.switch_page("views/prompt_space.py").run()
    assert len(at.get("plotly_chart")) == 4
    assert "raw" not in at.caption[0].value or "2-D" in at.caption[0].value
    # anatomy: bars, ratio and redundancy figures
    at.switch_page("views/batch_anatomy.py").run()
    assert len(at.get("plotly_chart")) == 3
    # learning curves: the figure, one verdict table from balpm.evidence.stats (every policy vs the baseline), downloads
    at.switch_page("views/learning_curves.py").run()
    assert len(at.get("plotly_chart")) == 1
    verdicts = at.dataframe[0].value
    assert {"random", "bald", "balpm"} <= set(verdicts["policy"])
    assert {"AULC diff [95% t CI]", "verdict (AULC)", "AULC bootstrap CI"} <= set(verdicts.columns)
    assert len(at.get("download_button")) == 3


def test_inspect_shows_the_triple_its_scores_and_when_it_was_picked(runs_root, monkeypatch):
    at = _app(runs_root, monkeypatch)
    rid = runs.default_run_id(TINY.replace(acquisition={"policy": "balpm"}, loop={"seed": 0}))
    at.switch_page("views/inspect.py").run()
    at.selectbox(key="in_run").set_value(rid).run()
    _ok(at)
    run = runs.open_run(runs_root, rid)
    acq = run.acquisitions()
    pick = acq[(acq["round"] == 1) & (acq["step"] == 3)].iloc[0]
    at.multiselect(key="in_typed").set_value([int(pick["pool_index"])]).run()
    _ok(at)
    rows = at.dataframe[0].value
    assert len(rows) == 1
    # the scores come first, the long texts last (they pushed the scores out of view), every row shown
    order = list(at.dataframe[0].proto.column_order)
    assert order[:1] == ["pool_index"] and order[-3:] == ["prompt", "chosen", "rejected"] and "u" in order
    row = rows.iloc[0]
    table, _, _ = run.dataset()
    truth = table.set_index("pair_id").loc[pick["pair_id"]]
    assert row["chosen"] == truth["chosen"] and row["rejected"] == truth["rejected"] and row["prompt"] == truth["prompt"]
    assert row["round_picked"] == 1 and row["step_picked"] == 3
    scores = run.pool_scores(1).set_index("pool_index").loc[int(pick["pool_index"])]
    for k in range(3):
        assert row[f"p{k}"] == pytest.approx(scores[f"p{k}"])
    assert row["u"] == pytest.approx(scores["u"]) and row["h"] == pytest.approx(scores["h"])
    assert row["score_at_pick"] == pytest.approx(pick["score"])
    csv = at.get("download_button")[0]
    assert "selection" in csv.proto.label


def test_step_through_advances_the_pick(runs_root, monkeypatch):
    at = _app(runs_root, monkeypatch)
    rid = runs.default_run_id(TINY.replace(acquisition={"policy": "balpm"}, loop={"seed": 0}))
    at.switch_page("views/prompt_space.py").run()
    at.selectbox(key="rp_run").set_value(rid).run()
    _ok(at)
    acq = runs.open_run(runs_root, rid).acquisitions()
    order = acq[acq["round"] == 0].sort_values("step")["pool_index"].astype(int).tolist()
    assert _metric(at, "current pick") == f"pool {order[0]}"
    at.button(key="rp_next").click().run()
    assert _metric(at, "current pick") == f"pool {order[1]}"
    step_key = f"rp_step::{rid}::0"
    at.slider(key=step_key).set_value(6).run()
    assert _metric(at, "current pick") == f"pool {order[5]}"
    # play: one pick per second of (here simulated) wall time, whatever each redraw costs
    from balpm_dashboard import frames

    clock = [1000.0]
    monkeypatch.setattr(frames, "play_clock", lambda: clock[0])
    at.button(key="rp_play").click().run()
    _ok(at)
    assert at.session_state["rp_playing"] is True
    assert _metric(at, "current pick") == f"pool {order[6]}"
    clock[0] += 1.0
    at.run()
    assert _metric(at, "current pick") == f"pool {order[7]}"
    clock[0] += 2.0  # a slow redraw: the position follows the clock, skipping a pick
    at.run()
    assert _metric(at, "current pick") == f"pool {order[9]}"
    at.button(key="rp_play").click().run()
    assert at.session_state["rp_playing"] is False
    frozen = _metric(at, "current pick")
    at.run()
    assert _metric(at, "current pick") == frozen
    # round 1 replays its own picks
    at.select_slider(key="rp_round").set_value(1).run()
    order1 = acq[acq["round"] == 1].sort_values("step")["pool_index"].astype(int).tolist()
    assert _metric(at, "current pick") == f"pool {order1[0]}"


def test_empty_runs_folder(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    _ok(at)
    assert _metric(at, "run folders") == "0"
    assert any("No runs" in i.value for i in at.info)
    for page in PAGES[1:]:
        at.switch_page(page).run()
        _ok(at)
        assert at.info, page


def _wait_complete(path: Path, timeout: float = 240.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        info = runs.inspect_run(path) if path.is_dir() else None
        if info is not None and info.state in ("complete", "failed"):
            assert info.state == "complete", info.error
            return
        time.sleep(0.5)
    raise AssertionError(f"{path.name} did not complete in {timeout}s")


def test_ablation_toggle_runs_the_variant_for_every_seed_of_the_base(runs_root, monkeypatch, tmp_path):
    """One knob flipped on the Ablations page runs for ALL the base's seeds (balpm is complete on seeds 0 and 1
    here; seed 3 was killed half-way, so it is not a seed of the base) as one background job whose progress
    counts runs, then shows the verdict paired over those seeds; the same knob again reuses the runs."""
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    before = _run_dirs(root)
    base_id = runs.default_run_id(TINY.replace(acquisition={"policy": "balpm"}, loop={"seed": 0}))
    at = _app(root, monkeypatch)
    at.switch_page("views/ablations.py").run()
    at.selectbox(key="abl_base").set_value(base_id).run()
    _ok(at)
    at.number_input(key="abl_beta").set_value(0.1)
    next(b for b in at.get("form_submit_button")).click().run()
    _ok(at)
    base = runs.open_run(root, base_id).config
    want = {s: runs.default_run_id(base.replace(acquisition={"beta": 0.1}, loop={"seed": s})) for s in (0, 1)}
    assert "started ablation β=0.1 x 2 seeds in the background (2 of 2 runs to compute" in _texts(at.success)
    bars = [b.proto.text for b in at.get("progress")]
    assert any(re.search(r"β=0\.1 x 2 seeds: [0-2]/2 runs done", _plain(t)) for t in bars), bars
    at.switch_page("views/runs.py").run()  # the job list: one job of 2 runs, one per seed of the base
    jobs_text = [_plain(b.proto.text) for b in at.get("progress")]
    assert any(re.search(r"^ablation β=0\.1 x 2 seeds: \w+ · [0-2]/2 runs · ", t) for t in jobs_text), jobs_text
    for rid in want.values():
        _wait_complete(root / rid)
    after = _run_dirs(root)
    assert sorted(set(after) - set(before)) == sorted(want.values())
    for s, rid in want.items():  # one run per seed, named as a variant (kept out of default comparisons)
        run = runs.open_run(root, rid)
        assert run.config.loop.seed == s and run.config.name == "ablation: β=0.1"
    # the same seed and initial set as the base (this fixture drew seed 1's balpm run on seed 0's world, so
    # only the base's own seed is compared here; test_dashboard_lesson checks every seed on its own world)
    assert runs.open_run(root, want[0]).pool().equals(runs.open_run(root, base_id).pool())
    at.switch_page("views/ablations.py").run()
    _ok(at)
    verdict = _texts([*at.success, *at.error, *at.info])
    assert "β=0.1 against balpm: " in verdict and "2 paired seeds" in verdict
    assert any("→" in s.value for s in at.subheader)
    diff = at.dataframe[-1].value
    assert set(diff["change"]) <= {"entered", "left", "shared"}
    rounds = []
    for show in ("entered", "left", "shared"):  # acquisition rounds read "-", never None / NaN
        at.radio(key="abl_show").set_value(show).run()
        rounds += at.dataframe[-1].value[["base_round", "variant_round"]].to_numpy().ravel().tolist()
    assert rounds and all(isinstance(r, str) and (r == "-" or r.isdigit()) for r in rounds), rounds[:5]
    # toggling the same knob again reuses the runs: no new folder
    at.number_input(key="abl_beta").set_value(0.1)
    next(b for b in at.get("form_submit_button")).click().run()
    _ok(at)
    assert "reusing the 2 runs of this variant" in _texts(at.success)
    assert _run_dirs(root) == after
    # and the base's own values are not a variant
    at.number_input(key="abl_beta").set_value(0.01)
    next(b for b in at.get("form_submit_button")).click().run()
    assert any("Nothing changed" in i.value for i in at.info)
    assert _run_dirs(root) == after
    pd.testing.assert_frame_equal(runs.open_run(root, base_id).rounds(), runs.open_run(runs_root, base_id).rounds())


def test_dashboard_command_line_and_settings(tmp_path, capsys):
    import socket

    import tomllib

    from balpm.cli import dashboard as cli
    from balpm.cli import main

    cmd = cli.streamlit_command(tmp_path, 8765)
    assert cmd[cmd.index("run") + 1] == str(APP.with_name("asgi_app.py"))  # app.py behind the Host check
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[-2:] == ["--runs", str(tmp_path.resolve())]
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert settings["browser"]["gatherUsageStats"] is False
    assert settings["server"]["address"] == "127.0.0.1" and settings["server"]["headless"] is True
    # bad input: one line, exit code 2, before anything starts
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "--runs", str(not_a_dir), "--port", "8765"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["dashboard", "--runs", str(tmp_path), "--port", str(port)])
    assert exc.value.code == 2 and "in use" in capsys.readouterr().err


def test_runs_page_starts_a_sweep_in_the_background_with_progress(runs_root, monkeypatch, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    before = _run_dirs(root)
    base_id = runs.default_run_id(TINY.replace(acquisition={"policy": "balpm"}, loop={"seed": 0}))
    at = _app(root, monkeypatch)
    at.selectbox(key="new_base").set_value(f"config of {base_id}")
    at.multiselect(key="new_policies").set_value(["random", "balpm"])
    at.text_input(key="new_seeds").set_value("7")
    at.number_input(key="new_rounds").set_value(2)
    next(b for b in at.get("form_submit_button") if "background" in b.proto.label).click().run()
    _ok(at)
    assert "started sweep" in _texts(at.success)
    assert len(at.get("progress")) == 1  # the live progress bar of the job
    base = runs.open_run(root, base_id).config
    want = [runs.default_run_id(base.replace(acquisition={"policy": p}, loop={"seed": 7, "rounds": 2}))
            for p in ("random", "balpm")]
    for rid in want:
        _wait_complete(root / rid)
    assert sorted(set(_run_dirs(root)) - set(before)) == sorted(want)
    at.run()
    _ok(at)
    assert "4/4 rounds" in at.get("progress")[0].proto.text


# ---- hardening (issue 8, "Dashboard") ----------------------------------------------------------
def _copy_root(runs_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    return root


def test_symlinks_out_of_the_runs_folder_are_refused_never_read(runs_root, monkeypatch, tmp_path):
    root = _copy_root(runs_root, tmp_path)
    secret = tmp_path / "secret.yaml"
    secret.write_text("token: do-not-show\n")
    rid = runs.default_run_id(TINY.replace(acquisition={"policy": "random"}, loop={"seed": 0}))
    # a run whose config.yaml is a link to a file outside (as to /etc/passwd), and a run folder that
    # is itself a link to a copy of a run outside the runs folder
    (root / rid / "config.yaml").unlink()
    (root / rid / "config.yaml").symlink_to(secret)
    outside = tmp_path / "elsewhere" / "linked-run"
    shutil.copytree(runs_root / runs.default_run_id(TINY.replace(acquisition={"policy": "bald"}, loop={"seed": 0})),
                    outside)
    (root / "linked-run").symlink_to(outside, target_is_directory=True)
    listed = {i.run_id: i for i in runs.list_runs(root)}  # the engine's listing refuses them before reading
    assert all(listed[r].state == "broken" and listed[r].reason.startswith("refused") for r in (rid, "linked-run"))
    at = _app(root, monkeypatch)
    _ok(at)
    order = list(at.dataframe[0].proto.column_order)  # "updated" before the hashes: it was cut off at the right
    assert order.index("updated") < order.index("data") and order.index("updated") < 8
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["linked-run", "state"] == "broken" and "refused" in table.loc["linked-run", "problem"]
    assert table.loc[rid, "state"] == "broken" and "refused" in table.loc[rid, "problem"]
    for run in (rid, "linked-run"):
        at.selectbox(key="detail_run").set_value(run).run()
        _ok(at)
        shown = " ".join(c.value for c in at.code) + " ".join(str(j.value) for j in at.json)
        assert "do-not-show" not in shown and "refused" in _texts(at.error)
    for page in PAGES:  # no page crashes on them (the Ablations page did)
        at.switch_page(page).run()
        _ok(at)


def test_text_from_run_folders_is_rendered_as_plain_text(runs_root, monkeypatch, tmp_path):
    from balpm_dashboard import untrusted

    root = _copy_root(runs_root, tmp_path)
    rid = runs.default_run_id(TINY.replace(acquisition={"policy": "random"}, loop={"seed": 0}))
    evil = "boom ![x](http://example.invalid/pixel.png) <img src=x onerror=alert(1)> :red[big] $x^2$ [a](javascript:1)"
    runs.RunWriter(root, rid).fail(RuntimeError(evil))  # the engine writes the error field
    at = _app(root, monkeypatch)
    _ok(at)
    bodies = [e.value for e in at.error if "boom" in e.value]
    assert bodies, "the failed run's error is shown"
    safe = untrusted.md(evil)
    # every ASCII punctuation character of it is backslash-escaped: no link, image, tag, directive, LaTeX
    # (a word joiner after : and @ breaks shortcodes and autolinks)
    assert re.fullmatch(r"(?:[A-Za-z0-9 ]|\\[!-/:-@\[-`{-~]\u2060?)*", safe), safe
    for body in bodies:
        assert safe in body and _plain(body).endswith(evil)
    # the escaping itself: every ASCII punctuation character is escaped, one line
    assert untrusted.md("a*b\n_c_") == "a\\*b \\_c\\_"
    assert untrusted.code("x`y") == "`` x'y ``"


def test_runs_page_details_and_start_form_say_what_they_mean(runs_root, monkeypatch, tmp_path):
    from balpm_dashboard import state

    real = TINY.replace(data={"paths": ("data/comparisons.jsonl",)})
    shown = state.config_for_display(real.to_yaml())
    note, body = shown.split("\n", 1)
    assert note.startswith("# data from files") and "synthetic" not in body and "comparisons.jsonl" in body
    assert "synthetic: teaching" in state.config_for_display(TINY.to_yaml())  # the teaching world keeps them
    at = _app(runs_root, monkeypatch)
    labels = {n.key: n.label for n in at.number_input}
    assert "keep" in labels["new_rounds"] and "keep" in labels["new_batch"] and "keep" in labels["new_initial"]
    updated = at.dataframe[0].value["updated"]
    updated = updated[updated != ""]  # the broken run has no status
    assert len(updated) == 6 and updated.str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$").all()


def _wait_job(job, timeout: float = 240.0) -> int:
    from balpm_dashboard import jobs

    return jobs.wait(job, timeout=timeout)


def test_background_jobs_run_from_the_snapshot_wherever_the_dashboard_started(tmp_path, monkeypatch):
    from balpm.experiment import snapshot
    from balpm_dashboard import jobs

    root = tmp_path / "runs"
    table, features = loop.load_inputs(TINY, progress=False)
    # a run on "data files" given by relative paths that mean nothing from any other folder
    cfg = TINY.replace(data={"paths": ("data/comparisons.jsonl",)}, features={"cache_dir": "rel-cache"},
                       acquisition={"policy": "balpm"}, loop={"rounds": 2})
    loop.run(cfg, root, table=table, features=features, progress=False)
    info = runs.list_runs(root)[0]
    assert snapshot.has_features(root, info.data_hash, info.feature_hash)
    pairs = snapshot.features_folder(root, info.data_hash, info.feature_hash) / "pairs.npy"
    assert (pairs.stat().st_mode & 0o777) == runs.file_mode()  # readable like every run file, not 0600
    elsewhere = tmp_path / "started-here"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("BALPM_LAUNCH_DIR", str(elsewhere))
    variant = cfg.replace(acquisition={"beta": 0.1})
    job = jobs.start_run(root, variant, kind="ablation")
    assert job.inputs == f"snapshot {info.data_hash}" and job.cmd[1:4] == ["-m", "balpm", "job"] \
        and job.cwd == root.resolve()
    assert _wait_job(job) == 0, jobs.log_tail(job)
    vinfo = runs.inspect_run(root / runs.default_run_id(variant))
    assert vinfo.state == "complete" and vinfo.data_hash == info.data_hash and vinfo.feature_hash == info.feature_hash
    assert not (elsewhere / "rel-cache").exists() and not (root / "rel-cache").exists()  # nothing featurized
    assert jobs.status_text(job) == "done"
    # a sweep from the snapshot, and a failing job shows as failed (initial larger than the pool)
    bad = jobs.start_sweep(root, cfg.replace(loop={"initial": 10_000}), ["random", "bald"], [5])
    assert _wait_job(bad) != 0
    p = jobs.progress(bad)
    assert p["failed"] and jobs.status_text(bad, p).startswith("failed")


def test_a_typed_config_may_not_read_outside_the_runs_folder(runs_root, monkeypatch, tmp_path):
    from balpm_dashboard import jobs

    root = _copy_root(runs_root, tmp_path)
    outside = TINY.replace(data={"paths": (str(tmp_path / "secret-data.jsonl"),)})
    inside = TINY.replace(data={"paths": ("data/mine.jsonl",)})
    assert jobs.outside_paths(root, outside) == [str(tmp_path / "secret-data.jsonl")]
    assert jobs.outside_paths(root, inside) == []
    assert jobs.outside_paths(root, inside.replace(features={"cache_dir": "../cache"})) == ["../cache"]
    assert jobs.outside_paths(root, TINY) == []  # the synthetic world reads no file
    runs.atomic_write_text(root / "typed.yaml", outside.to_yaml())
    before = _run_dirs(root)
    at = _app(root, monkeypatch)
    at.text_input(key="new_conf").set_value("typed.yaml")
    next(b for b in at.get("form_submit_button") if "background" in b.proto.label).click().run()
    _ok(at)
    assert "outside the runs folder" in _texts(at.error) and "--allow-outside-data" in _texts(at.error)
    assert not at.success and _run_dirs(root) == before and not (root / "_jobs").exists()


def test_dashboard_cli_refuses_a_missing_runs_folder_and_demo_checks_its_port_first(tmp_path, capsys):
    import socket

    import tomllib

    from balpm.cli import dashboard as cli
    from balpm.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "--runs", str(tmp_path / "typo"), "--port", str(free)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "does not exist" in err and "--create" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "typo").exists()
    assert cli.check_runs_dir(tmp_path / "new", create=True).is_dir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main(["demo", "--port", str(port), "--runs-dir", str(tmp_path / "demo")])
    assert exc.value.code == 2 and "in use" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # found before the demo ran
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableXsrfProtection"] is True and settings["server"]["enableCORS"] is True
    cmd = cli.streamlit_command(tmp_path, 8765)
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"
    assert cmd[cmd.index("--server.enableCORS") + 1] == "true"
    assert "--allow-outside-data" not in cmd and "--allow-outside-data" in cli.streamlit_command(tmp_path, 8765, allow_outside_data=True)
    # the flags carry config.toml's look and limits (a wheel install has no .streamlit/ folder)
    for key, value in cli.APP_SETTINGS.items():
        section, name = key.split(".")
        want = settings[section][name]
        assert value == (str(want).lower() if isinstance(want, bool) else str(want)), key
        assert cmd[cmd.index(f"--{key}") + 1] == value


def test_the_dashboard_fits_missing_maps_in_the_background_on_start(tmp_path, monkeypatch):
    # a run made by `balpm run` (no sweep fitted its map): paper-shape prompts (D > 2), few enough for PCA
    cfg = TINY.replace(data={"synthetic": "paper", "synthetic_size": 60},
                       loop={"initial": 8, "batch_size": 8, "rounds": 2})
    loop.run(cfg, tmp_path, progress=False)
    (info,) = runs.list_runs(tmp_path)
    folder = tmp_path / "_datasets" / info.data_hash
    assert not list(folder.glob("projection-*"))
    at = _app(tmp_path, monkeypatch)  # the Runs page only: nobody asked for a map yet
    _ok(at)
    t0 = time.time()
    while not (folder / "projection-pca.json").is_file() and time.time() - t0 < 60:
        time.sleep(0.2)
    assert (folder / "projection-pca.json").is_file(), "the map was not fitted in the background"
