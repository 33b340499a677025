"""One config surface: every value typed by its field, errors naming the key and flag, one YAML reader, the registry."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from balpm import acquisition
from balpm.config import (
    CLI_FLAGS,
    POLICIES,
    AcquisitionConfig,
    RunConfig,
    coerce_value,
    parse_assignment,
    read_yaml,
    resolve_key,
)
from balpm.errors import ConfigError
from balpm.experiment import runs, sweep


def test_yaml_values_are_coerced_by_the_field_type():
    cfg = RunConfig.from_yaml('loop:\n  rounds: "5"\n  save_pool_scores: "no"\nmodel:\n  hidden: [16, "8"]\n')
    assert cfg.loop.rounds == 5 and isinstance(cfg.loop.rounds, int)
    assert cfg.loop.save_pool_scores is False  # "no" is never True
    assert cfg.model.hidden == (16, 8)
    assert RunConfig.from_yaml("loop: {save_pool_scores: 'yes'}").loop.save_pool_scores is True
    assert RunConfig.from_yaml("acquisition: {beta: '0.5'}").acquisition.beta == 0.5


@pytest.mark.parametrize("text, names", [
    ("loop: {rounds: 3.5}", ("loop.rounds", "--rounds", "whole number")),
    ("loop: {rounds: '3.5'}", ("loop.rounds", "whole number")),
    ("acquisition: {beta: abc}", ("acquisition.beta", "--beta", "number")),
    ("acquisition: {beta: .inf}", ("acquisition.beta", "finite")),
    ("acquisition: {d: .nan}", ("acquisition.d", "finite")),
    ("loop: {save_pool_scores: maybe}", ("loop.save_pool_scores", "true or false")),
    ("loop: {seed: true}", ("loop.seed", "whole number")),
    ("acquisition: {policy: no_such_policy}", ("acquisition.policy", "--policy", "balpm")),
    ("loop: {roundz: 3}", ("roundz", "loop")),
    ("loop: 3", ("loop", "mapping")),
    ("- a\n- b", ("mapping",)),
    ("data: {split_ratios: [0.5, 0.5]}", ("split_ratios", "3 values")),
])
def test_bad_yaml_values_are_one_line_errors_naming_the_key(text, names):
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_yaml(text)
    msg = str(exc.value)
    assert "\n" not in msg
    for name in names:
        assert name in msg, (name, msg)


def test_a_runs_own_config_yaml_with_meta_is_a_valid_input(tmp_path):
    cfg = RunConfig().replace(acquisition={"beta": 0.3}, loop={"rounds": 4})
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml() + "meta:\n  version: 0.1.0\n  data_hash: abc\n")
    assert RunConfig.from_yaml(path) == cfg
    assert RunConfig.from_yaml(str(path)) == cfg
    assert "meta" not in read_yaml(path)
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("changes, flag", [
    ({"acquisition": {"beta": float("inf")}}, "--beta"),
    ({"acquisition": {"d": float("nan")}}, "--d"),
    ({"model": {"lr": float("inf")}}, "--lr"),
    ({"model": {"hidden": (0,)}}, "--hidden"),
    ({"model": {"device": "foo"}}, "--device"),
    ({"loop": {"seed": -1}}, "--seed"),
    ({"loop": {"rounds": 0}}, "--rounds"),
    ({"acquisition": {"beta": -0.1}}, "--beta"),
    ({"acquisition": {"floor": 0.0}}, "acquisition.floor"),
])
def test_validate_names_the_cli_flag(changes, flag):
    section, values = next(iter(changes.items()))
    # built behind the coercion's back, as a caller of dataclasses.replace could
    cfg = dataclasses.replace(RunConfig(), **{section: dataclasses.replace(getattr(RunConfig(), section), **values)})
    with pytest.raises(ConfigError) as exc:
        cfg.validate()
    assert flag in str(exc.value)
    with pytest.raises(ConfigError):  # the coercing path refuses the same values
        RunConfig().replace(**changes).validate()


def test_device_cuda_needs_a_visible_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device.*no CUDA GPU"):
        RunConfig().replace(model={"device": "cuda"}).validate()
    with pytest.raises(ConfigError, match="features.device"):
        RunConfig().replace(features={"device": "cuda:0"}).validate()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert RunConfig().replace(model={"device": "cuda"}).validate().model.device == "cuda"


def test_set_assignments_and_keys():
    assert parse_assignment("loop.rounds=5") == ("loop.rounds", 5)
    assert parse_assignment("beta=0.1") == ("acquisition.beta", 0.1)
    assert parse_assignment("model.hidden=16,8") == ("model.hidden", (16, 8))
    assert parse_assignment("loop.save_pool_scores=off") == ("loop.save_pool_scores", False)
    assert resolve_key("k") == "acquisition.k"
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_key("batch_size")
    with pytest.raises(ConfigError, match="--set loop.rounds"):
        parse_assignment("loop.rounds=3.5")
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_assignment("loop.rounds")
    with pytest.raises(ConfigError, match="unknown config key"):
        parse_assignment("loop.nope=1")
    assert RunConfig().set("rounds", "7").loop.rounds == 7
    assert parse_assignment("name=my run") == ("name", "my run")
    for key in CLI_FLAGS:  # every first-class flag names a real field
        coerce_value(key, getattr(getattr(RunConfig(), key.split(".")[0]), key.split(".")[1]))


def test_grid_values_are_typed_by_the_field():
    grid = sweep.parse_grid(["beta=0.01,0.1", "k=7,13", "loop.save_pool_scores=no"])
    assert grid == {"acquisition.beta": [0.01, 0.1], "acquisition.k": [7, 13], "loop.save_pool_scores": [False]}
    assert all(isinstance(v, float) for v in grid["acquisition.beta"])
    for bad in ("beta=abc", "beta=0.01,inf", "k=3.5"):
        with pytest.raises(ConfigError, match="--grid"):
            sweep.parse_grid([bad])


def test_every_policy_has_a_registry_entry():
    missing = [p for p in POLICIES if p not in acquisition.REGISTRY]
    assert not missing, f"policies without a registry entry (their variants would merge in reports): {missing}"
    for spec in acquisition.REGISTRY.values():
        names = {"uncertainty"} | {f.name for f in dataclasses.fields(spec.knobs)}
        assert set(spec.label_knobs()) <= names and callable(spec.build)
    assert "beta_mode" in acquisition.REGISTRY["balpm"].label_knobs()


def test_labels_come_from_the_registry():
    cfg = RunConfig().replace(acquisition={"policy": "balpm", "beta_mode": "scaled"})
    assert runs.policy_label(cfg) == "balpm beta_mode=scaled"
    assert runs.policy_label(RunConfig().replace(acquisition={"policy": "softmax_bald", "coldness": 5})) == \
        "softmax_bald coldness=5"
    # a knob the policy does not own is refused by name (whose knob it is, and the policy's knobs)
    with pytest.raises(ConfigError, match="not a knob of policy 'bald'.*balpm"):
        RunConfig().acquisition.updated({"policy": "bald", "k": 5})
    with pytest.raises(ConfigError, match="unknown policy"):
        AcquisitionConfig(policy="nosuch")


def test_a_run_config_from_before_the_matmul_field_resumes_with_the_kernel_it_ran_with(tmp_path):
    """model.matmul came later (default auto); a run's config.yaml without it ran on torch's default kernels."""
    old = RunConfig().replace(model={"matmul": "blas"})
    doc = old.to_dict()
    del doc["model"]["matmul"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**doc, "meta": {"version": "0.1.0"}}))
    cfg = RunConfig.from_yaml(path)
    assert cfg.model.matmul == "blas" and cfg == old
    assert cfg.hash() == old.hash()
    assert RunConfig.from_dict({**doc, "meta": {}}) == old
    # a user's own YAML (no meta) takes today's default, which hashes differently from the old runs
    assert RunConfig.from_dict(doc).model.matmul == "auto"
    assert RunConfig.from_dict(doc).hash() != old.hash()
