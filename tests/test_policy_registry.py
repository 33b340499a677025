"""The policy registry keeps run folders written before it (tests/fixtures/legacy_runs, by commit 5af9a0c):
same run ids, listed, resumed bit for bit; and a knob added later leaves every old hash alone."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from balpm.acquisition import registry
from balpm.acquisition.balpm import BalpmKnobs
from balpm.config import LEGACY_KNOBS, AcquisitionConfig, RunConfig, read_yaml
from balpm.errors import ConfigError
from balpm.experiment import loop, runs
from balpm.knobs import knob
from balpm.safe_yaml import load_file

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"
FOLDERS = sorted(p for p in LEGACY.iterdir() if (p / "config.yaml").is_file())


def _meta(folder: Path) -> dict:
    return load_file(folder / "config.yaml", "config")["meta"]


def test_the_fixture_holds_every_kind_of_old_run():
    names = {p.name for p in FOLDERS}
    assert {"random", "bald", "softmax_bald", "balpm", "balpm-kl", "balpm-scaled", "balpm-noisy", "full",
            "random-interrupted", "balpm-interrupted"} <= names


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_an_old_config_reads_and_hashes_to_its_run_id(folder):
    cfg = RunConfig.from_yaml(folder / "config.yaml")
    assert cfg.hash() == _meta(folder)["config_hash"]
    # written back and read again (the flat section, legacy values included): still the same run
    again = RunConfig.from_yaml(cfg.to_yaml() + "meta:\n  run_id: again\n")  # as a run's own config.yaml
    assert again == cfg and again.hash() == cfg.hash()


def test_a_non_default_legacy_knob_of_another_policy_is_kept_hash_only():
    cfg = RunConfig.from_yaml(LEGACY / "random" / "config.yaml")
    assert cfg.acquisition.legacy == (("beta", 0.1),)  # the teaching preset's beta on random
    assert cfg.acquisition.knob_values() == {}  # random owns no knob
    # at its old default the same knob is simply dropped: same hash as a config without it
    raw = read_yaml(LEGACY / "random" / "config.yaml")
    raw["acquisition"]["beta"] = LEGACY_KNOBS["beta"]
    plain = RunConfig.from_dict(raw)
    assert plain.acquisition.legacy == ()
    raw["acquisition"] = {"policy": "random", "uncertainty": "epistemic"}
    assert RunConfig.from_dict(raw).hash() == plain.hash()
    # a knob no policy of the union had is refused, naming random's knobs
    raw["acquisition"]["weight"] = 2
    with pytest.raises(ConfigError, match="not a knob of policy 'random'"):
        RunConfig.from_dict(raw)


@pytest.fixture(scope="module")
def legacy_root(tmp_path_factory):
    """A copy of the fixture with its shared dataset snapshots rebuilt (left out of the repository: the
    synthetic worlds are deterministic, and the snapshot hash must come out as the one each run recorded)."""
    root = tmp_path_factory.mktemp("legacy") / "runs"
    shutil.copytree(LEGACY, root)
    done = set()
    for folder in FOLDERS:
        cfg, data_hash = RunConfig.from_yaml(folder / "config.yaml"), _meta(folder)["data_hash"]
        if data_hash not in done:
            table, features = loop.load_inputs(cfg, progress=False)
            assert runs.write_dataset(root, table, [str(p) for p in features.prompt_ids],
                                      features.prompts_P_D) == data_hash
            done.add(data_hash)
    return root


def test_the_folders_list(legacy_root):
    infos = {i.run_id: i for i in runs.list_runs(legacy_root)}
    assert set(infos) >= {p.name for p in FOLDERS}
    for name in ("random", "bald", "balpm", "balpm-kl", "full"):
        assert infos[name].state == "complete", (name, infos[name])
    assert infos["balpm-kl"].label == "balpm beta=0.05 k=5 estimator=kl"
    assert infos["random"].label == "random" and infos["balpm-scaled"].label == "balpm beta=0.1 beta_mode=scaled"
    from typer.testing import CliRunner

    from balpm.cli import app

    out = CliRunner().invoke(app, ["runs", "--runs-dir", str(legacy_root)])
    assert out.exit_code == 0, out.output
    for p in FOLDERS:
        assert p.name in out.output


def _frame(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df[[c for c in df.columns if not c.endswith("_seconds")]]  # wall-clock timings differ


@pytest.mark.parametrize("name", ["random", "balpm"])
def test_an_interrupted_old_run_resumes_bit_for_bit(tmp_path, legacy_root, name):
    root = tmp_path / "runs"
    shutil.copytree(legacy_root / runs.DATASETS_DIR, root / runs.DATASETS_DIR)
    shutil.copytree(LEGACY / f"{name}-interrupted", root / f"{name}-interrupted")
    cfg = RunConfig.from_yaml(root / f"{name}-interrupted" / "config.yaml")
    done = loop.run(cfg, root, resume=True, run_id=f"{name}-interrupted", progress=False)
    assert runs.inspect_run(done).state == "complete"
    for file in ("acquisitions.parquet", "rounds.parquet"):
        pd.testing.assert_frame_equal(_frame(done / file), _frame(LEGACY / name / file), check_exact=True)
    scores = sorted((LEGACY / name / "pool_scores").glob("*.parquet")) if (LEGACY / name / "pool_scores").is_dir() else []
    assert (name == "balpm") == bool(scores)
    for f in scores:
        pd.testing.assert_frame_equal(pd.read_parquet(done / "pool_scores" / f.name), pd.read_parquet(f),
                                      check_exact=True)


def test_a_knob_added_later_leaves_old_hashes_alone(monkeypatch):
    """A knob added to a policy after runs existed carries ``since_default``: at that value it is left out
    of the hash, so every existing run id resolves; set otherwise, it makes a new run."""

    @dataclasses.dataclass(frozen=True)
    class LaterBalpmKnobs(BalpmKnobs):
        gamma: float = knob(0.0, "a knob BAL-PM learnt later", ge=0, since_default=0.0)

    old = registry.policy_entry("balpm")
    monkeypatch.setitem(registry._REGISTRY, "balpm", dataclasses.replace(old, knobs=LaterBalpmKnobs))
    # and a new policy with a knob of its own changes nothing for the others
    registry.register_policy("later_toy", knobs=LaterBalpmKnobs, build=old.build)
    try:
        for folder in FOLDERS:
            cfg = RunConfig.from_yaml(folder / "config.yaml")
            assert cfg.hash() == _meta(folder)["config_hash"], folder.name
        base = RunConfig.from_yaml(LEGACY / "balpm" / "config.yaml")
        assert isinstance(base.acquisition.knobs, LaterBalpmKnobs) and base.acquisition.gamma == 0.0
        assert base.replace(acquisition={"gamma": 0.5}).hash() != base.hash()
    finally:
        registry.unregister_policy("later_toy")


def test_a_knob_of_another_policy_is_refused_by_name(capsys):
    with pytest.raises(ConfigError, match=r"acquisition.beta \(--beta\) is not a knob of policy 'bald' \(it is a knob of balpm\)"):
        AcquisitionConfig.make("bald", beta=0.5)
    with pytest.raises(ConfigError, match="not a knob of policy 'random'.*softmax_bald"):
        RunConfig().replace(acquisition={"policy": "random"}).acquisition.updated({"coldness": 2})
    assert AcquisitionConfig.make("softmax_bald", coldness=3).coldness == 3.0
    # the CLI: a flag of a knob the chosen policy does not own says whose knob it is
    from balpm.cli import main

    for args, whose in ((["--policy", "random", "--beta", "0.2"], "--beta"),
                        (["--policy", "bald", "--set", "acquisition.coldness=2"], "knob of softmax_bald")):
        with pytest.raises(SystemExit) as exc:
            main(["run", *args, "--print-config"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and whose in err, err
        assert len(err.strip().splitlines()) == 1


def test_the_dashboard_shows_the_old_folders(legacy_root, monkeypatch):
    """Every page of the dashboard renders the folders written before policies owned their knobs: the
    learning-curve table names every old label, the Prompt space and Anatomy pages draw their charts."""
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    pages = re.findall(r'st\.Page\("(views/[a-z_]+\.py)"', app.read_text())
    monkeypatch.setenv("BALPM_RUNS_DIR", str(legacy_root))
    at = AppTest.from_file(str(app), default_timeout=120)
    at.run()
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.message for e in at.exception])
    at.switch_page("views/learning_curves.py").run()
    shown = " ".join(str(v) for v in at.dataframe[0].value["policy"])
    assert "bald" in shown and "balpm" in shown  # random is the baseline row
    at.switch_page("views/batch_anatomy.py").run()
    assert at.get("plotly_chart"), "Anatomy drew no chart for the old BAL-PM runs"
