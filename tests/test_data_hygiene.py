"""Text hygiene where text enters the table (issue 15): NFC before prompt ids, empty-after-stripping text
(zero-width / format characters included), duplicate column names in every format, a BOM at a field start,
HH answers that end at the next Human turn, lone surrogates in any field, CarperAI metadata of the wrong
JSON type, upper-case extensions and terminal-safe file names in messages. Plus: the real data's ids and
texts are exactly what they were before (pinned digests)."""
from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from balpm.data import load_table
from balpm.data.inspect import format_report
from balpm.errors import BalpmError, DataError, printable


def _row(post: str, a: str = "summary one", b: str = "summary two", **extra) -> dict:
    row = {"info": {"id": "t3_x", "post": post, "title": "a title", "subreddit": "tifu"}, "split": "train",
           "summaries": [{"text": a, "policy": "sup1"}, {"text": b, "policy": "ref"}], "choice": 0, "worker": "w1",
           "batch": "b1", "extra": {"confidence": 5}}
    for key, value in extra.items():
        if key in ("title", "subreddit"):
            row["info"][key] = value
        elif key == "policy":
            row["summaries"][0]["policy"] = value
        else:
            row[key] = value
    return row


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.isprintable(), text
    return text


# ----------------------------------------------------------------------------- NFC


def test_unicode_equivalent_prompts_get_one_prompt_id_and_one_split(tmp_path):
    nfc = "Caf\u00e9 owner: should I split the tips? " * 3
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    rows = [_row(nfc if i % 2 else nfd, f"answer {i}", f"other {i}", worker=f"w{i}") for i in range(8)]
    rows += [_row(f"another post {i}", f"a {i}", f"b {i}") for i in range(30)]
    table = load_table([_write_jsonl(tmp_path / "c.json", rows)]).table
    cafe = table[table["prompt"].str.startswith("Caf")]
    assert len(cafe) == 8 and cafe["prompt_id"].nunique() == 1 and cafe["split"].nunique() == 1
    assert (cafe["prompt"] == nfc).all()  # the text itself is stored NFC: one prompt id, one text


# ----------------------------------------------------------------------------- empty after stripping


@pytest.mark.parametrize("blank", ["\u200b", "\ufeff", "\u200b \u200c\u200d\u2060\n", " \t "])
def test_invisible_prompt_is_a_bad_row(tmp_path, blank):
    path = _write_jsonl(tmp_path / "z.json", [_row("a real post"), _row(blank)])
    with pytest.raises(DataError, match=r"line 2: an empty text") as err:
        load_table([path])
    _one_line(err.value)
    result = load_table([path], skip_bad=True, ratios=(1, 0, 0))
    assert len(result.table) == 1 and result.report["bad_reasons"] == {"empty_text": 1}


def test_invisible_answers_both_is_a_bad_row_one_invisible_answer_is_an_empty_answer(tmp_path):
    path = _write_jsonl(tmp_path / "z.json", [_row("post one", "\u200b", "\ufeff "), _row("post two", "\u200b", "fine")])
    result = load_table([path], skip_bad=True, ratios=(1, 0, 0))
    assert result.report["bad_reasons"] == {"empty_text": 1} and result.report["empty_answers"] == 0
    assert list(result.table["prompt"]) == ["post two"]
    table_path = tmp_path / "t.csv"
    table_path.write_text("prompt,chosen,rejected\n\u200b\u200b,a,b\nok,a,b\n", encoding="utf-8")
    assert load_table([table_path], skip_bad=True, ratios=(1, 0, 0)).report["bad_reasons"] == {"empty_text": 1}


# ----------------------------------------------------------------------------- duplicate columns


def test_duplicate_column_names_refused_in_parquet_and_arrow(tmp_path):
    arrays = [pa.array(["p"]), pa.array(["first"]), pa.array(["r"]), pa.array(["second"])]
    table = pa.Table.from_arrays(arrays, names=["prompt", "chosen", "rejected", "chosen"])
    pq.write_table(table, tmp_path / "d.parquet")
    with pa.ipc.new_stream(str(tmp_path / "d.arrow"), table.schema) as writer:
        writer.write_table(table)
    for name in ("d.parquet", "d.arrow"):
        for fmt in ("auto", "table"):
            with pytest.raises(DataError, match=r"column 'chosen' occurs twice \(columns 2 and 4\)") as err:
                load_table([tmp_path / name], format=fmt)
            _one_line(err.value)


def test_duplicate_column_names_refused_in_csv_and_json_keys(tmp_path):
    (tmp_path / "d.csv").write_text("prompt,chosen,rejected,chosen\np,a,b,c\n", encoding="utf-8")
    with pytest.raises(DataError, match="twice"):
        load_table([tmp_path / "d.csv"])
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "chosen": "c"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="appears twice"):
        load_table([tmp_path / "d.jsonl"], format="table")


# ----------------------------------------------------------------------------- BOM at a field start


def test_bom_before_a_quoted_csv_field_mid_file_is_stripped(tmp_path):
    rows = "".join(f'p{i},a{i},b{i}\n' for i in range(5))
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\n" + rows.encode()
                                     + b'\xef\xbb\xbf"quoted, prompt",\xef\xbb\xbf"an, answer",other\n')
    table = load_table([tmp_path / "b.csv"], ratios=(1, 0, 0)).table
    last = table[table["prompt"].str.contains("quoted")].iloc[0]
    assert last["prompt"] == "quoted, prompt" and last["chosen"] == "an, answer"
    assert not table[["prompt", "chosen", "rejected"]].apply(lambda c: c.str.contains("\ufeff")).any().any()


def test_bom_at_the_start_of_a_json_text_is_stripped(tmp_path):
    path = _write_jsonl(tmp_path / "b.json", [_row("\ufeffa post", "\ufeffanswer"), _row("a post", "answer", "x")])
    table = load_table([path], ratios=(1, 0, 0)).table
    assert table["prompt_id"].nunique() == 1 and set(table["prompt"]) == {"a post"} and "answer" in set(table["chosen"])


# ----------------------------------------------------------------------------- HH


def test_hh_answer_ends_at_the_next_human_turn(tmp_path):
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello there\n\nHuman: and then?",
             "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
            {"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: q2\n\nAssistant: good answer",
             "rejected": "\n\nHuman: q\n\nAssistant: a\n\nHuman: q2\n\nAssistant: bad answer\n\nHuman: thanks"}]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    table = load_table([path], ratios=(1, 0, 0)).table.sort_values("line")
    assert list(table["chosen"]) == ["hello there", "good answer"]
    assert list(table["rejected"]) == ["go away", "bad answer"]
    assert not table["chosen"].str.contains("Human").any() and not table["rejected"].str.contains("Human").any()


def test_hh_answers_empty_once_the_human_turn_is_cut_are_a_bad_row(tmp_path):
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant:\n\nHuman: hello?", "rejected": "\n\nHuman: hi\n\nAssistant: \u200b"},
            {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}]
    result = load_table([_write_jsonl(tmp_path / "train.jsonl", rows)], skip_bad=True, ratios=(1, 0, 0))
    assert result.report["bad_reasons"] == {"empty_text": 1} and len(result.table) == 1


# ----------------------------------------------------------------------------- lone surrogates


@pytest.mark.parametrize("field", ["title", "subreddit", "worker", "policy", "split", "post"])
def test_lone_surrogate_in_any_field_is_a_bad_row(tmp_path, field):
    bad = _row("a post" if field != "post" else "post \ud800 here", **({} if field == "post" else {field: "x\ud800y"}))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_row("fine post")) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")  # JSON escapes \ud800
    assert "\\ud800" in path.read_text()
    with pytest.raises(DataError, match=r"line 2: not valid UTF-8 \(.*lone surrogate") as err:
        load_table([path])
    message = _one_line(err.value)
    assert field in message or (field == "post" and "info.post" in message)
    result = load_table([path], skip_bad=True, ratios=(1, 0, 0))
    assert len(result.table) == 1 and result.report["bad_reasons"] == {"bad_encoding": 1}
    pa.Table.from_pandas(result.table)  # the table can be written (no surrogate reached it)
    assert format_report(result.report).encode("utf-8")


def test_lone_surrogate_in_a_table_column_is_a_bad_row(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "source": "src\\udc80"}\n'
                    '{"prompt": "q", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    result = load_table([path], skip_bad=True, ratios=(1, 0, 0), columns={"source": "source"})
    assert result.report["bad_reasons"] == {"bad_encoding": 1} and list(result.table["prompt"]) == ["q"]


# ----------------------------------------------------------------------------- CarperAI metadata


def _carper(root: Path, dataset_dict, state) -> Path:
    (root / "train").mkdir(parents=True)
    table = pa.Table.from_pylist([{"prompt": f"SUBREDDIT: r/x\nPOST: post {i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                                  for i in range(4)])
    with pa.ipc.new_stream(str(root / "train" / "data-00000-of-00001.arrow"), table.schema) as writer:
        writer.write_table(table)
    (root / "dataset_dict.json").write_text(json.dumps(dataset_dict))
    (root / "train" / "state.json").write_text(json.dumps(state))
    return root


GOOD_STATE = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}


def test_carper_well_formed_metadata_loads(tmp_path):
    assert len(load_table([_carper(tmp_path / "ok", {"splits": ["train"]}, GOOD_STATE)], ratios=(1, 0, 0)).table) == 4


@pytest.mark.parametrize("dataset_dict,state,match", [
    (["train"], GOOD_STATE, "expected a JSON object, got a list"),
    ("train", GOOD_STATE, "expected a JSON object, got a str"),
    ({"splits": "train"}, GOOD_STATE, "'splits' must be a list"),
    ({"splits": [1]}, GOOD_STATE, "split 1 is not a file or folder name"),
    ({"splits": ["../../etc"]}, GOOD_STATE, "is not a file or folder name inside the dataset folder"),
    ({"splits": ["valid"]}, GOOD_STATE, "split folder 'valid' listed in dataset_dict.json is missing"),
    ({"splits": ["train"]}, {"_data_files": "data-00000-of-00001.arrow"}, "'_data_files' must be a list"),
    ({"splits": ["train"]}, {"_data_files": [1, 2]}, "'_data_files' must be a list"),
    ({"splits": ["train"]}, {"_data_files": [{"filename": 3}]}, "data file 3 is not a file or folder name"),
    ({"splits": ["train"]}, {"_data_files": [{"filename": "../x.arrow"}]}, "not a file or folder name"),
    ({"splits": ["train"]}, [GOOD_STATE], "expected a JSON object, got a list"),
])
def test_carper_metadata_of_the_wrong_type_is_one_line(tmp_path, dataset_dict, state, match):
    root = _carper(tmp_path / "c", dataset_dict, state)
    for fmt in ("auto", "carper"):
        with pytest.raises(DataError, match=match) as err:
            load_table([root], format=fmt)
        _one_line(err.value)


# ----------------------------------------------------------------------------- names and extensions


def test_upper_case_extensions_load_like_lower_case(tmp_path):
    import gzip

    rows = [_row(f"post {i}", f"a {i}", f"b {i}") for i in range(6)]
    (tmp_path / "c.json.GZ").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    _write_jsonl(tmp_path / "c.json", rows)
    upper, lower = load_table([tmp_path / "c.json.GZ"]).table, load_table([tmp_path / "c.json"]).table
    assert list(upper["pair_id"]) == list(lower["pair_id"])
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "chosen": "a", "rejected": "b"}]), tmp_path / "t.PARQUET")
    assert len(load_table([tmp_path / "t.PARQUET"], ratios=(1, 0, 0)).table) == 1
    assert len(load_table([tmp_path], ratios=(1, 0, 0)).table) == 7  # a folder finds them too


def test_control_characters_in_a_file_name_are_escaped_in_errors_and_reports(tmp_path):
    name = "evil\x1b[31m\u202e.json"
    (tmp_path / name).write_text("{not json\n", encoding="utf-8")
    with pytest.raises(BalpmError) as err:
        load_table([tmp_path / name])
    message = _one_line(err.value)
    assert "\x1b" not in message and "evil\\x1b[31m\\u202e.json" in message
    _write_jsonl(tmp_path / name, [_row("a post")])
    report = load_table([tmp_path / name], ratios=(1, 0, 0)).report
    text = format_report(report)
    assert "\x1b" not in text and "\u202e" not in text and "evil\\x1b[31m\\u202e.json" in text


def test_printable_escapes_what_a_terminal_would_interpret():
    assert printable("plain caf\u00e9/path.json") == "plain caf\u00e9/path.json"
    assert printable("a\x1b[2Jb\x07\u202e\ud800\u2028") == "a\\x1b[2Jb\\x07\\u202e\\ud800\\u2028"
    assert str(DataError("x\x1by\nz")) == "x\\x1by z"


# ----------------------------------------------------------------------------- the real data is unchanged


#: digests of the real files' ids and texts as loaded BEFORE the hygiene changes (commit e1040f9): NFC, BOM and
#: zero-width handling must not change one byte of real data (none of it is NFD, starts with a BOM or is invisible)
REAL_DIGESTS = {
    "tldr": ("8ec675539b7dc2f23774b529c0880b7fa4f69dc58f7220a4a8f478e669911879",
             "48e31861d9abecffbc16dac352f6611da3ef3513ab3fa18c3f44e8c952191f9c"),
    "cnndm": ("1af1bb1292910cf40fbfb685336471e9f6ccfd3704abe1a9d4f17212d92f478c",
              "0c6f582c75fb9f0871f2da49bf87d650297832c3d281a6a1620db9554216d3fe"),
}


def test_real_ids_and_texts_are_byte_identical_to_before(shared_data):
    folder = shared_data / "summarize_from_feedback" / "comparisons"
    files = {"tldr": ["batch13.json", "batch18.json"], "cnndm": ["batch0_cnndm.json", "cnndm0.json"]}
    for name, (ids_digest, texts_digest) in REAL_DIGESTS.items():
        table = load_table([str(folder / f) for f in files[name]]).table
        ids = hashlib.sha256("".join(table.prompt_id + table.pair_id).encode()).hexdigest()
        texts = hashlib.sha256("\x00".join(table.prompt + table.chosen + table.rejected).encode()).hexdigest()
        assert (ids, texts) == (ids_digest, texts_digest), name
        assert all(unicodedata.is_normalized("NFC", t) for t in table.prompt)


def test_duplicate_field_names_inside_a_struct_column_refused(tmp_path):
    """The hub layout's ``info`` struct with two ``post`` fields: to_pylist would keep the last one silently."""
    info = pa.array([{"post": "p", "id": "x"}], type=pa.struct([("post", pa.string()), ("post", pa.string())]))
    summaries = pa.array([[{"text": "a"}, {"text": "b"}]])
    pq.write_table(pa.Table.from_arrays([info, summaries, pa.array([0])], names=["info", "summaries", "choice"]),
                   tmp_path / "hub.parquet")
    with pytest.raises(DataError, match=r"the field 'post' of column 'info' occurs twice \(fields 1 and 2\)") as err:
        load_table([tmp_path / "hub.parquet"], format="hub")
    _one_line(err.value)
