"""Features with the bundled MiniLM: equality with sentence-transformers, shapes, truncation, cache."""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from balpm.config import FeatureConfig
from balpm.errors import BalpmError, ConfigError, FeatureError
from balpm.features import (
    Text,
    featurize,
    load_encoder,
    minilm_path,
    resolve_device,
    table_texts,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm", device="cpu")


def _table() -> pd.DataFrame:
    rows = [
        ("p1", "tldr", "My landlord raised the rent by 40% and I can't afford it.", "Rent up 40%, can't pay.", "Landlord bad."),
        ("p2", "tldr", "I (25F) got a job offer far from home; my partner wants to stay.", "Job far away, partner stays?", "Job."),
        ("p1", "tldr", "My landlord raised the rent by 40% and I can't afford it.", "Huge rent rise, what now?", "Rent."),
        ("p3", "cnndm", "The city council approved a new park on Tuesday after a long debate.", "Council approves park.", "Park news."),
        ("p4", "hh", "Human: How do I boil an egg?\n\nAssistant:", "Put it in boiling water for 9 minutes.", "No."),
    ]
    return pd.DataFrame([{"pair_id": f"c{i}", "prompt_id": p, "source": s, "prompt": q, "chosen": c, "rejected": r,
                          "split": "train"} for i, (p, s, q, c, r) in enumerate(rows)])


def _cfg(tmp_path: Path, **kw) -> FeatureConfig:
    return FeatureConfig(cache_dir=str(tmp_path / kw.pop("sub", "cache")), batch_size=kw.pop("batch_size", 3), **kw)


@pytest.fixture(scope="module")
def base_feats(tmp_path_factory):
    """The small table featurized once with MiniLM (fresh cache)."""
    return featurize(_table(), _cfg(tmp_path_factory.mktemp("base")), progress=False)


def test_minilm_equals_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["A short one.", "Post: My cat ate my homework.\nSummary: cat, homework", "x",
             "A somewhat longer sentence about rent, jobs and the difficulty of choosing between them."]
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    expected = st.encode(texts, convert_to_numpy=True)
    ours = minilm.encode([Text("", t, "") for t in texts], max_length=256, batch_size=2, progress=False)
    assert ours.dtype == np.float32 and ours.shape == (4, 384)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert minilm.spec.normalize and minilm.spec.pooling == "mean"  # from the folder's modules.json


def test_featurize_shapes_order_templates_and_prompt_rows(base_feats, minilm):
    table, feats = _table(), base_feats
    assert list(feats.prompt_ids) == ["p1", "p2", "p3", "p4"]
    assert list(feats.pair_ids) == list(table["pair_id"])
    assert feats.prompts_P_D.shape == (4, 384) and feats.pairs_N_2_D.shape == (5, 2, 384)
    assert feats.prompts_P_D.dtype == np.float32 and feats.pairs_N_2_D.dtype == np.float32
    assert feats.pairs_N_2_D.flags["C_CONTIGUOUS"] and feats.prompts_P_D.flags["C_CONTIGUOUS"]
    # chosen = column 0, rejected = column 1, rendered with each source's template
    direct = minilm.encode([Text("Post: ", table.prompt[0], "\nSummary: " + table.chosen[0]),
                            Text("Post: ", table.prompt[0], "\nSummary: " + table.rejected[0]),
                            Text("Article: ", table.prompt[3], "\nSummary: " + table.rejected[3]),
                            Text("", table.prompt[4], "\n" + table.chosen[4]),
                            Text("Post: ", table.prompt[1], "")], progress=False)
    np.testing.assert_allclose(feats.pairs_N_2_D[0, 0], direct[0], atol=1e-6)
    np.testing.assert_allclose(feats.pairs_N_2_D[0, 1], direct[1], atol=1e-6)
    np.testing.assert_allclose(feats.pairs_N_2_D[3, 1], direct[2], atol=1e-6)
    np.testing.assert_allclose(feats.pairs_N_2_D[4, 0], direct[3], atol=1e-6)
    np.testing.assert_allclose(feats.prompts_P_D[1], direct[4], atol=1e-6)
    rows = feats.prompt_rows(table["prompt_id"])
    assert rows.shape == (5, 384)
    np.testing.assert_array_equal(rows[2], feats.prompts_P_D[0])
    assert feats.manifest["templates"]["tldr"]["pair"] == "Post: {prompt}\nSummary: {answer}"
    with pytest.raises(FeatureError):
        feats.prompt_rows(["nope"])


def test_deterministic_bitwise_and_length_sorting_keeps_order(tmp_path, base_feats):
    table = _table()
    a = base_feats
    b = featurize(table, _cfg(tmp_path, sub="b"), progress=False)
    assert np.array_equal(a.pairs_N_2_D, b.pairs_N_2_D) and np.array_equal(a.prompts_P_D, b.prompts_P_D)
    assert a.hash == b.hash and not a.cache_hits["pairs"] and not b.cache_hits["pairs"]
    # one text per batch (no padding at all) gives the same rows in the same order
    c = featurize(table.iloc[:3], _cfg(tmp_path, sub="c", batch_size=1), progress=False)
    np.testing.assert_allclose(c.pairs_N_2_D, a.pairs_N_2_D[:3], atol=1e-5)


def _memory_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array, np.ndarray) else None
    return False


def test_second_call_is_cache_hit_without_loading_the_model(tmp_path, monkeypatch, caplog):
    table = _table()
    first = featurize(table, _cfg(tmp_path), progress=False)
    assert first.cache_hits == {"prompts": False, "pairs": False}

    def no_model(*a, **k):
        raise AssertionError("model loaded on a cache hit")

    monkeypatch.setattr(importlib.import_module("balpm.features.featurize"), "load_encoder", no_model)
    with caplog.at_level(logging.INFO, logger="balpm.features"):
        second = featurize(table, _cfg(tmp_path), progress=False)
    assert second.cache_hits == {"prompts": True, "pairs": True}
    assert sum("cache hit" in r.getMessage() for r in caplog.records) == 2
    assert np.array_equal(first.pairs_N_2_D, second.pairs_N_2_D) and first.hash == second.hash
    # a hit is a read-only memory map of the cache file (entries larger than RAM load), not a copy
    assert _memory_mapped(second.pairs_N_2_D) and _memory_mapped(second.prompts_P_D)
    assert not second.pairs_N_2_D.flags.writeable and not _memory_mapped(first.pairs_N_2_D)
    manifest = json.loads(Path(first.manifest["paths"]["pairs"]).with_suffix(".json").read_text())
    for key in ("model", "revision", "pooling", "max_length", "templates", "texts_sha256", "array_sha256"):
        assert key in manifest
    assert manifest["shape"] == [5, 2, 384]
    # anything that changes the features changes the key: here the max length and the texts
    with pytest.raises(AssertionError, match="model loaded"):
        featurize(table, _cfg(tmp_path, max_length=64), progress=False)
    changed = table.assign(chosen=table["chosen"].str.upper())
    with pytest.raises(AssertionError, match="model loaded"):
        featurize(changed, _cfg(tmp_path), progress=False)


@pytest.mark.parametrize("damage", ["shape", "values", "manifest", "truncated"])
def test_damaged_cache_entry_is_recomputed(tmp_path, damage):
    table = _table().iloc[:2]
    good = featurize(table, _cfg(tmp_path), progress=False)
    npy = Path(good.manifest["paths"]["pairs"])
    if damage == "shape":
        np.save(npy, np.zeros((2, 2, 3), dtype=np.float32))
    elif damage == "values":
        arr = np.load(npy)
        arr[0, 0, 0] += 1.0
        np.save(npy, arr)
    elif damage == "manifest":
        npy.with_suffix(".json").write_text("{not json")
    else:
        npy.write_bytes(npy.read_bytes()[:100])
    again = featurize(table, _cfg(tmp_path), progress=False)
    assert again.cache_hits == {"prompts": True, "pairs": False}
    assert np.array_equal(again.pairs_N_2_D, good.pairs_N_2_D)
    assert featurize(table, _cfg(tmp_path), progress=False).cache_hits["pairs"]  # repaired


def test_long_prompt_is_truncated_never_the_answer(tmp_path, minilm):
    answer = "the landlord doubled the rent so i am moving out next month"
    prompt = " ".join(["my apartment story goes on and on"] * 400)
    text = Text("Post: ", prompt, "\nSummary: " + answer)
    out = minilm.tokenize([text], max_length=48)
    ids = out.ids[0]
    answer_ids = minilm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert len(ids) <= 48 and out.prompts_truncated == 1 and out.answers_truncated == 0
    assert ids[-1] == minilm.tokenizer.sep_token_id and ids[-1 - len(answer_ids):-1] == answer_ids
    assert len(ids) >= 46  # the prompt gets the rest of the budget
    # through featurize: the features are those of the truncated text, answer intact
    table = pd.DataFrame([{"pair_id": "a", "prompt_id": "p", "prompt": prompt, "chosen": answer, "rejected": "no idea",
                           "split": "train", "source": "tldr"}])
    feats = featurize(table, _cfg(tmp_path, max_length=48), progress=False)
    assert feats.manifest["pairs"]["prompts_truncated"] == 2 and feats.manifest["pairs"]["answers_truncated"] == 0
    np.testing.assert_allclose(feats.pairs_N_2_D[0, 0], minilm.encode_ids([ids], progress=False)[0], atol=1e-6)


def test_bf16_autocast_changes_key_and_stays_close(tmp_path):
    table = _table().iloc[:2]
    fp32 = featurize(table, _cfg(tmp_path, max_length=64), progress=False)
    bf16 = featurize(table, _cfg(tmp_path, max_length=64, dtype="bf16"), progress=False)
    assert bf16.hash != fp32.hash and not bf16.cache_hits["pairs"]
    assert bf16.pairs_N_2_D.dtype == np.float32 and not np.array_equal(bf16.pairs_N_2_D, fp32.pairs_N_2_D)
    cos = (bf16.pairs_N_2_D * fp32.pairs_N_2_D).sum(-1)  # unit vectors
    assert cos.min() > 0.98


def test_validate_rejects_other_tables(base_feats):
    table, feats = _table(), base_feats
    assert feats.validate(table) is feats
    for other in (table.iloc[::-1], table.iloc[:3], table.assign(pair_id=table["pair_id"] + "x")):
        with pytest.raises(FeatureError) as err:
            feats.validate(other)
        assert "\n" not in str(err.value)


def _one_line_error(exc_type, fn):
    with pytest.raises(exc_type) as err:
        fn()
    assert isinstance(err.value, BalpmError) and "\n" not in str(err.value)
    return str(err.value)


def test_bad_inputs_give_one_line_errors_before_work(tmp_path):
    table = _table()
    cache = tmp_path / "cache"
    assert "prompt" in _one_line_error(FeatureError, lambda: featurize(table.drop(columns="prompt"), _cfg(tmp_path)))
    assert "c1" in _one_line_error(FeatureError, lambda: featurize(table.assign(chosen=["a", None, "b", "c", "d"]), _cfg(tmp_path)))
    assert "fp32" in _one_line_error(ConfigError, lambda: featurize(table, _cfg(tmp_path, dtype="fp16")))
    _one_line_error(ConfigError, lambda: featurize(table, _cfg(tmp_path, load_in_4bit=True, load_in_8bit=True)))
    assert "512" in _one_line_error(ConfigError, lambda: featurize(table, _cfg(tmp_path, max_length=4096)))
    assert "local" in _one_line_error(FeatureError, lambda: featurize(table, _cfg(tmp_path, model="nobody/no-such-model-xyz")))
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert "config.json" in _one_line_error(FeatureError, lambda: featurize(table, _cfg(tmp_path, model=str(not_a_model))))
    same_id = table.assign(prompt_id="p1")
    assert "different prompt texts" in _one_line_error(FeatureError, lambda: featurize(same_id, _cfg(tmp_path)))
    assert not cache.exists() or not list(cache.rglob("*.npy"))


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        assert auto.type in ("cpu", "mps")
        _one_line_error(FeatureError, lambda: resolve_device("cuda"))
    _one_line_error(ConfigError, lambda: resolve_device("tpu9"))


def test_real_tldr_comparisons(tldr_table, tmp_path):
    table = tldr_table(4)
    feats = featurize(table, _cfg(tmp_path, max_length=96, batch_size=4), progress=False)
    assert feats.pairs_N_2_D.shape == (4, 2, 384)
    assert feats.prompts_P_D.shape == (table["prompt_id"].nunique(), 384)
    np.testing.assert_allclose(np.linalg.norm(feats.pairs_N_2_D, axis=-1), 1.0, atol=1e-5)
    assert (np.abs(feats.pairs_N_2_D[:, 0] - feats.pairs_N_2_D[:, 1]).max(axis=1) > 1e-3).all()
    _, _, _, pair_texts, _ = table_texts(table)
    assert pair_texts[0].full.startswith("Post: ") and "\nSummary: " in pair_texts[0].full
    assert feats.manifest["pairs"]["answers_truncated"] == 0


def test_hub_id_resolves_offline_from_the_hub_cache(tmp_path, monkeypatch, base_feats):
    import huggingface_hub.constants

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--minilm-copy"
    snapshot = repo / "snapshots" / sha
    for src in minilm_path().rglob("*"):
        if src.is_file():
            (snapshot / src.relative_to(minilm_path())).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / src.relative_to(minilm_path())).symlink_to(src)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    feats = featurize(_table(), _cfg(tmp_path, model="acme/minilm-copy"), progress=False)
    assert feats.manifest["revision"] == sha and feats.manifest["model"] == "acme/minilm-copy"
    assert feats.manifest["normalize"] and feats.hash != base_feats.hash
    np.testing.assert_allclose(feats.pairs_N_2_D, base_feats.pairs_N_2_D, atol=1e-6)


def test_one_empty_answer_is_featurized_both_empty_is_an_error(tmp_path):
    """12 real CNN/DM comparisons pit an empty summary against a real one; they keep their features."""
    table = _table()
    table.loc[3, "rejected"] = ""
    feats = featurize(table, _cfg(tmp_path), progress=False)
    assert np.isfinite(feats.pairs_N_2_D[3]).all()
    assert not np.allclose(feats.pairs_N_2_D[3, 0], feats.pairs_N_2_D[3, 1])
    table.loc[3, "chosen"] = "  "
    with pytest.raises(FeatureError, match="empty or non-text chosen and rejected"):
        featurize(table, _cfg(tmp_path, sub="other"), progress=False)
