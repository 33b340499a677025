"""OpenAI comparison files (the real ones) and the hub's parquet layout -> the preference table."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from balpm.data import load_table, validate_table
from balpm.errors import DataError

TLDR_FILES = ("batch13.json", "batch18.json", "edit_b2_eval_test.json")
CNNDM_FILES = ("batch0_cnndm.json", "cnndm0.json")


def _raw_rows(comparisons_dir: Path, names) -> list[tuple[str, int, dict]]:
    """(file, line, object) for every line, read with the json module only."""
    out = []
    for name in names:
        path = comparisons_dir / name
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                out.append((str(path), line_no, json.loads(line)))
    return out


def _no_batch(obj: dict) -> str:
    return json.dumps({k: v for k, v in obj.items() if k != "batch"}, sort_keys=True)


@pytest.fixture(scope="module")
def tldr(comparisons_dir):
    return load_table([comparisons_dir / n for n in TLDR_FILES])


@pytest.fixture(scope="module")
def cnndm(comparisons_dir):
    return load_table([comparisons_dir / n for n in CNNDM_FILES])


@pytest.fixture(scope="module")
def everything(comparisons_dir):
    return load_table([comparisons_dir])


def test_tldr_row_count_is_exact(tldr, comparisons_dir):
    raw = _raw_rows(comparisons_dir, TLDR_FILES)
    unique = {_no_batch(obj) for _, _, obj in raw}
    assert len(raw) == 1097 + 674 + 5
    assert len(unique) == len(raw)  # no exact duplicates among the TL;DR files
    assert tldr.report["rows"] == len(tldr.table) == 1776
    assert tldr.report["duplicates_dropped"] == 0
    assert tldr.report["bad_rows"] == 0
    assert tldr.report["per_source"] == {"tldr": 1776}
    posts = {obj["info"]["post"] for _, _, obj in raw}
    assert tldr.report["prompts"] == tldr.table["prompt_id"].nunique() == len(posts)


def test_cnndm_duplicates_are_dropped_and_counted(cnndm, comparisons_dir):
    raw = _raw_rows(comparisons_dir, CNNDM_FILES)
    assert len({_no_batch(obj) for _, _, obj in raw}) == 437
    assert cnndm.report["rows"] == 437
    assert cnndm.report["duplicates_dropped"] == 437
    dropped = {Path(f["path"]).name: f["duplicates_dropped"] for f in cnndm.report["files"]}
    assert dropped == {"batch0_cnndm.json": 0, "cnndm0.json": 437}
    assert set(cnndm.table["batch"]) == {"batch0_cnndm"}  # the first occurrence is kept
    assert set(cnndm.table["source"]) == {"cnndm"}
    assert cnndm.report["prompts"] == len({obj["info"]["article"] for _, _, obj in raw}) == 45


def test_schema_and_fields_match_the_raw_json(everything, comparisons_dir):
    table = validate_table(everything.table)
    assert table["pair_id"].is_unique
    raw = {(f, line): obj for f, line, obj in _raw_rows(comparisons_dir, TLDR_FILES + CNNDM_FILES)}
    for row in table.itertuples(index=False):
        obj = raw[(row.file, row.line)]
        summaries, choice = obj["summaries"], obj["choice"]
        info = obj["info"]
        assert row.prompt == info.get("post", info.get("article"))
        assert row.source == ("tldr" if "post" in info else "cnndm")
        assert row.chosen == summaries[choice]["text"]
        assert row.rejected == summaries[1 - choice]["text"]
        assert row.policy_chosen == summaries[choice]["policy"]
        assert row.policy_rejected == summaries[1 - choice]["policy"]
        assert row.worker == obj["worker"] and row.batch == obj["batch"]
        assert row.orig_split == obj["split"]
        assert row.confidence == obj["extra"]["confidence"]
        assert row.title == info["title"]
        if "id" in info:
            assert row.source_id == info["id"]
        else:
            assert pd.isna(row.source_id)


def test_edit_file_without_ids_shares_prompt_ids_with_batch_files(tldr, comparisons_dir):
    edit_posts = {obj["info"]["post"] for _, _, obj in _raw_rows(comparisons_dir, ["edit_b2_eval_test.json"])}
    shared = tldr.table[tldr.table["prompt"].isin(edit_posts)]
    by_post = shared.groupby("prompt").agg(ids=("prompt_id", "nunique"), files=("file", "nunique"))
    assert (by_post["ids"] == 1).all()
    assert (by_post["files"] > 1).any()  # some edit posts also appear in batch13/18 and keep one id


def test_same_pair_judged_by_different_workers_is_not_a_duplicate(tldr, comparisons_dir):
    workers = defaultdict(set)
    for _, _, obj in _raw_rows(comparisons_dir, TLDR_FILES):
        texts = frozenset(s["text"] for s in obj["summaries"])
        workers[(obj["info"]["post"], texts)].add(obj["worker"])
    multi = [k for k, w in workers.items() if len(w) > 1]
    assert multi, "the real files hold pairs judged by several workers"
    table = tldr.table
    key = [(p, frozenset((c, r))) for p, c, r in zip(table["prompt"], table["chosen"], table["rejected"])]
    table = table.assign(_key=key)
    for k in multi[:50]:
        rows = table[table["_key"] == k]
        assert rows["worker"].nunique() == len(workers[k])
        assert rows["pair_id"].nunique() == len(rows)


def test_empty_generated_summaries_are_kept(cnndm):
    empty = (cnndm.table["chosen"].str.strip() == "") | (cnndm.table["rejected"].str.strip() == "")
    assert int(empty.sum()) == cnndm.report["empty_answers"] == 12
    assert (cnndm.table.loc[empty, "chosen"].str.strip() != "").all()  # the human never preferred the empty one here


def test_cnndm_is_ood_beside_tldr(everything, comparisons_dir):
    table = everything.table
    assert set(table.loc[table["source"] == "cnndm", "split"]) == {"ood"}
    assert set(table.loc[table["source"] == "tldr", "split"]) == {"train", "valid", "test"}
    assert everything.report["rows"] == 1776 + 437
    explicit = load_table([comparisons_dir / n for n in TLDR_FILES], ood_paths=[comparisons_dir / "batch0_cnndm.json"])
    assert explicit.report["per_split"]["ood"] == 437
    pd.testing.assert_series_equal(
        explicit.table.set_index("pair_id")["split"].sort_index(), table.set_index("pair_id")["split"].sort_index())


def test_cnndm_alone_is_split_like_any_data(cnndm):
    assert "ood" not in set(cnndm.table["split"])
    assert cnndm.table.groupby("prompt_id")["split"].nunique().max() == 1


def test_keep_original_maps_valid1_valid2(tldr, comparisons_dir):
    kept = load_table([comparisons_dir / n for n in TLDR_FILES], keep_original=True)
    t = kept.table
    assert (t.loc[t["orig_split"] == "valid1", "split"] == "valid").all()
    assert (t.loc[t["orig_split"] == "valid2", "split"] == "test").all()
    assert kept.report["split"]["prompts_moved"] == 0


# --------------------------------------------------------------------------- hub layout


def _hub_schema() -> pa.Schema:
    info = pa.struct([(k, pa.string()) for k in ("id", "post", "title", "subreddit", "site", "article")])
    summary = pa.struct([("text", pa.string()), ("policy", pa.string()), ("note", pa.string())])
    return pa.schema([
        ("info", info), ("summaries", pa.list_(summary)), ("choice", pa.int32()), ("worker", pa.string()),
        ("batch", pa.string()), ("split", pa.string()), ("extra", pa.struct([("confidence", pa.int32())])),
    ])


def test_hub_layout_parquet_equals_the_json_loader(tmp_path, comparisons_dir):
    names = TLDR_FILES + ("batch0_cnndm.json",)
    objs = [obj for _, _, obj in _raw_rows(comparisons_dir, names)]
    folder = tmp_path / "summarize_from_feedback" / "comparisons"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(objs, schema=_hub_schema())
    # the hub's rule: train = split == "train", validation = valid1 + valid2
    is_train = pa.compute.equal(table["split"], "train")
    pq.write_table(table.filter(is_train), folder / "train-00000-of-00001.parquet")
    pq.write_table(table.filter(pa.compute.invert(is_train)), folder / "validation-00000-of-00001.parquet")

    hub = load_table([tmp_path / "summarize_from_feedback"])
    ref = load_table([comparisons_dir / n for n in names])
    assert [f["format"] for f in hub.report["files"]] == ["hub"]
    assert hub.report["rows"] == ref.report["rows"] == 1776 + 437
    cols = [c for c in ref.table.columns if c not in ("file", "line")]
    a = hub.table[cols].sort_values("pair_id").reset_index(drop=True)
    b = ref.table[cols].sort_values("pair_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert hub.table["file"].str.endswith("validation-00000-of-00001.parquet").all()
    # a single hub file works too, and the format is detected from its columns
    single = load_table([folder / "validation-00000-of-00001.parquet"])
    assert single.report["rows"] == hub.report["rows"]


def test_hub_id_offline_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_table(["openai/summarize_from_feedback"], format="hub")
    assert "\n" not in str(err.value)
    assert "openai/summarize_from_feedback" in str(err.value) and "local folder" in str(err.value)
