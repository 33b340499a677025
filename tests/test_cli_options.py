"""``balpm featurize`` and ``balpm data inspect`` take their options from the config dataclasses, like ``balpm run``:
every FeatureConfig field is an option, and an option and ``--set`` of the same key are one knob (same value
accepted, same error refused)."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest
import typer.main

from balpm.cli import app, main
from balpm.config import DataConfig, FeatureConfig, field_info


def _params(*path: str) -> dict[str, object]:
    """The click parameters of one command (``("data", "inspect")``), by python name."""
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: p for p in cmd.params}


def _run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_feature_field_is_a_featurize_option_with_its_help_and_default():
    params = _params("featurize")
    for f in fields(FeatureConfig):
        param = params[f.name]  # KeyError names the field a new FeatureConfig knob forgot
        assert "--" + f.name.replace("_", "-") in param.opts
        assert param.help.startswith(f.metadata["help"])
        assert param.default == f.default
    assert "set_" in params


def test_data_options_are_the_data_fields():
    for command in (("featurize",), ("data", "inspect")):
        params = _params(*command)
        for f in fields(DataConfig):
            if f.name.endswith("_col") or f.name in ("format", "skip_bad", "subsample"):
                assert params[f.name].help.startswith(field_info(f"data.{f.name}")[1].metadata["help"])
        assert params["seed"].help.startswith(field_info("data.split_seed")[1].metadata["help"])


@pytest.mark.parametrize("command", [["featurize"], ["data", "inspect"]])
def test_an_option_and_its_set_give_the_same_error(command, comparisons_dir, tmp_path, capsys):
    data = str(comparisons_dir / "edit_b2_eval_test.json")
    flag, key = ("--pooling", "features.pooling") if command == ["featurize"] else ("--format", "data.format")
    errors = []
    for extra in ([flag, "bogus"], ["--set", f"{key}=bogus"]):
        own = ["--cache-dir", str(tmp_path), "--no-progress"] if command == ["featurize"] else []
        code, _, err = _run([*command, data, *own, *extra], capsys)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        errors.append(err.split(": ", 2)[-1])
    assert errors[0] == errors[1] and "unknown value 'bogus'; choose one of" in errors[0]
    assert not list(tmp_path.rglob("*.npy"))


def test_set_outside_the_commands_sections_is_refused(comparisons_dir, capsys):
    code, _, err = _run(["data", "inspect", str(comparisons_dir / "edit_b2_eval_test.json"), "--set", "model.lr=0.1"],
                        capsys)
    assert code == 2 and "reads only data.*" in err and len(err.strip().splitlines()) == 1


def test_pooling_cls_by_option_and_by_set_is_one_feature_set(comparisons_dir, tmp_path, capsys, monkeypatch):
    """cls pooling (the encoder has it; the config refused it before) reaches the encoder either way: the
    second spelling is a cache hit of the first, with the same feature hash."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = ["featurize", str(comparisons_dir / "edit_b2_eval_test.json"), "--cache-dir", str(tmp_path),
            "--max-length", "32", "--no-progress", "--json"]
    code, out, err = _run(base + ["--pooling", "cls"], capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["pooling"] == "cls" and not first["parts"]["pairs"]["cache_hit"]
    code, out, err = _run(base + ["--set", "features.pooling=cls"], capsys)
    assert code == 0, err
    second = json.loads(out)
    assert second["feature_hash"] == first["feature_hash"] and second["parts"]["pairs"]["cache_hit"]
    code, out, err = _run(base, capsys)  # the default pooling is another feature set
    assert code == 0 and json.loads(out)["feature_hash"] != first["feature_hash"]
