"""Hypothesis-generated malformed rows: each stops the load with one line naming file, line and problem,
or with skip_bad is skipped and counted under its reason."""
from __future__ import annotations

import copy
import itertools
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from balpm.data import load_table
from balpm.data.rows import BAD_REASONS
from balpm.errors import DataError

BASE = {
    "info": {"id": "t3_abc", "post": "My cat ignores me. What should I do?", "title": "Cat", "subreddit": "pets"},
    "split": "valid1",
    "summaries": [{"text": "Cat ignores me.", "policy": "ref", "note": None},
                  {"text": "Ignored by cat, help.", "policy": "sup", "note": None}],
    "choice": 0, "worker": "w0", "batch": "b0", "extra": {"confidence": 3},
}
MARK = "@@MARK@@"
_counter = itertools.count()

not_text = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
blank = st.text(alphabet=" \t\r\n", max_size=4)


def _good(worker: str) -> str:
    row = copy.deepcopy(BASE)
    row["worker"] = worker
    return json.dumps(row)


@st.composite
def malformed_openai(draw) -> tuple[bytes, str]:
    """One malformed comparison line (bytes, without newline) and the reason it must be reported under."""
    reason = draw(st.sampled_from(sorted(set(BAD_REASONS) - {"prefix_mismatch", "bad_csv", "truncated"})))
    row = copy.deepcopy(BASE)
    row["worker"] = draw(st.text(max_size=8))
    ensure_ascii = draw(st.booleans())
    if reason == "bad_json":
        text = json.dumps(row, ensure_ascii=ensure_ascii)
        line = text[: draw(st.integers(1, len(text) - 1))] + draw(st.sampled_from(["", "}", "]", "'", ",}"]))
        try:
            json.loads(line)
            assume(False)
        except ValueError:
            pass
        return line.encode("utf-8"), reason
    if reason == "not_object":
        value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5), st.none(), st.booleans()))
        return json.dumps(value).encode("utf-8"), reason
    if reason == "bad_encoding":
        if draw(st.booleans()):
            row["info"]["post"] = "x" + MARK + "y"
            raw = json.dumps(row).encode("utf-8")
            bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xfe\xfe"]))
            return raw.replace(MARK.encode(), bad), reason
        where = draw(st.sampled_from(["post", "s0", "s1"]))
        target = row["info"] if where == "post" else row["summaries"][int(where[1])]
        target["post" if where == "post" else "text"] = MARK
        return json.dumps(row).replace(json.dumps(MARK), '"a\\ud800b"').encode("utf-8"), reason
    if reason == "missing_field":
        path = draw(st.sampled_from([("info",), ("summaries",), ("choice",), ("info", "post"),
                                     ("summaries", 0, "text"), ("summaries", 1, "text")]))
        parent = row
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = None
        return json.dumps(row, ensure_ascii=ensure_ascii).encode("utf-8"), reason
    if reason == "bad_type":
        where = draw(st.sampled_from(["info", "post", "s0", "s1", "title", "extra", "split"]))
        value = draw(not_text)
        if where == "info":
            assume(not isinstance(value, dict))
            row["info"] = value
        elif where == "post":
            row["info"]["post"] = value
        elif where in ("s0", "s1"):
            row["summaries"][int(where[1])]["text"] = value
        elif where == "title":
            row["info"]["title"] = value
        elif where == "extra":
            assume(not isinstance(value, dict))
            row["extra"] = value
        else:
            row["split"] = value
        return json.dumps(row).encode("utf-8"), reason
    if reason == "bad_choice":
        row["choice"] = draw(st.one_of(st.integers().filter(lambda c: c not in (0, 1)), st.floats(allow_nan=False),
                                       st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
        return json.dumps(row).encode("utf-8"), reason
    if reason == "bad_summaries":
        summary = {"text": "s", "policy": "p"}
        row["summaries"] = draw(st.one_of(
            st.lists(st.just(summary), max_size=5).filter(lambda s: len(s) != 2),
            st.lists(st.one_of(st.integers(), st.text(max_size=3)), min_size=2, max_size=2),
            st.text(max_size=4), st.integers(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        ))
        return json.dumps(row).encode("utf-8"), reason
    if reason == "too_deep":  # a nested array, alone on its line or as a field, up to 200,000 levels
        depth = draw(st.sampled_from([65, 1000, 5000, 200_000]))
        nested = "[" * depth + "]" * depth
        if draw(st.booleans()):
            return nested.encode(), reason
        return ('{"x": ' + nested + ", " + json.dumps(row)[1:]).encode(), reason
    assert reason == "empty_text"
    if draw(st.booleans()):
        row["info"]["post"] = draw(blank)
    else:
        row["summaries"][0]["text"], row["summaries"][1]["text"] = draw(blank), draw(blank)
    return json.dumps(row, ensure_ascii=ensure_ascii).encode("utf-8"), reason


def _write(folder, lines: list[bytes], suffix: str = ".json"):
    path = folder / f"case{next(_counter)}{suffix}"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("malformed")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=malformed_openai(), fmt=st.sampled_from(["auto", "openai"]))
def test_malformed_openai_line(folder, case, fmt):
    line, reason = case
    path = _write(folder, [_good("w1").encode(), line, _good("w2").encode()])
    with pytest.raises(DataError) as err:
        load_table([path], format=fmt)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line 2: {BAD_REASONS[reason]}"), message
    assert "--skip-bad" in message
    result = load_table([path], format=fmt, skip_bad=True)
    assert result.report["rows"] == 2
    assert result.report["bad_rows"] == 1
    assert result.report["bad_reasons"] == {reason: 1}
    assert result.report["files"][0]["bad_rows"] == 1
    assert sorted(result.table["worker"]) == ["w1", "w2"]


@st.composite
def malformed_table_row(draw) -> tuple[bytes, str]:
    """A malformed prompt/chosen/rejected JSON line and its reason."""
    reason = draw(st.sampled_from(["bad_json", "not_object", "missing_field", "bad_type", "empty_text", "bad_encoding"]))
    row = {"prompt": "p" + draw(st.text(max_size=5)), "chosen": "a", "rejected": "b"}
    if reason == "bad_json":
        text = json.dumps(row)
        return text[: draw(st.integers(1, len(text) - 1))].encode("utf-8"), reason
    if reason == "not_object":
        return json.dumps(draw(st.lists(st.integers(), max_size=2))).encode("utf-8"), reason
    if reason == "missing_field":
        key = draw(st.sampled_from(["prompt", "chosen", "rejected"]))
        if draw(st.booleans()):
            del row[key]
        else:
            row[key] = None
    elif reason == "bad_type":
        row[draw(st.sampled_from(["prompt", "chosen", "rejected"]))] = draw(not_text)
    elif reason == "empty_text":
        if draw(st.booleans()):
            row["prompt"] = draw(blank)
        else:
            row["chosen"], row["rejected"] = draw(blank), draw(blank)
    else:
        return json.dumps(row).replace('"a"', '"a\\udc80"').encode("utf-8") if draw(st.booleans()) \
            else json.dumps(row).encode("utf-8").replace(b'"a"', b'"a\xff"'), reason
    return json.dumps(row).encode("utf-8"), reason


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=malformed_table_row())
def test_malformed_table_line(folder, case):
    line, reason = case
    good = [json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}).encode() for i in range(2)]
    path = _write(folder, [good[0], line, good[1]], suffix=".jsonl")
    with pytest.raises(DataError) as err:
        load_table([path])
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: line 2: {BAD_REASONS[reason]}")
    result = load_table([path], skip_bad=True)
    assert (result.report["rows"], result.report["bad_rows"], result.report["bad_reasons"]) == (2, 1, {reason: 1})


def test_csv_bad_encoding_and_short_row(folder):
    lines = [b"prompt,chosen,rejected", b"p1,a,b", b"p2,\xffa,b", b"p3,a", b'"p4\nmore",a,b', b"p5,a,b"]
    path = _write(folder, lines, suffix=".csv")
    with pytest.raises(DataError, match=r"line 3: not valid UTF-8"):
        load_table([path])
    result = load_table([path], skip_bad=True)
    assert result.report["bad_reasons"] == {"bad_encoding": 1, "bad_csv": 1}
    assert result.table["prompt"].tolist() == ["p1", "p4\nmore", "p5"]
    assert result.table["line"].tolist() == [2, 5, 7]


def test_every_row_bad_with_skip_bad_gives_an_empty_table(folder):
    path = _write(folder, [b"{not json", b"[1, 2]"], suffix=".jsonl")
    result = load_table([path], format="table", skip_bad=True)
    assert result.report["rows"] == 0 and result.report["bad_rows"] == 2
    assert result.report["bad_reasons"] == {"bad_json": 1, "not_object": 1}


def test_truncated_gzip_is_one_bad_row(folder):
    import gzip

    import hashlib

    lines = [_good(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(200)]  # incompressible workers
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = folder / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.json.gz: line \d+: the file ends early") as err:
        load_table([path], format="openai")
    assert "\n" not in str(err.value)
    for fmt in ("openai", "auto"):
        result = load_table([path], format=fmt, skip_bad=True)
        assert result.report["bad_reasons"] == {"truncated": 1}
        assert 0 < result.report["rows"] < 200
