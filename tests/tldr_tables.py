"""The real TL;DR sample as a labelled table and an unlabelled pool with its labels hidden: the inputs of the
``balpm select`` / ``balpm label`` tests (test_select, test_labels, test_label_browser)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def write_select_inputs(folder: Path, comparisons_dir: Path, *, labelled: slice = slice(0, 30),
                        pool: slice = slice(30, 80), seed: int = 0) -> dict[tuple[str, str, str], str]:
    """Write ``folder/labelled.jsonl`` (prompt, chosen, rejected: the human choice) from the comparisons
    ``labelled`` of ``batch13.json``, and ``folder/pool.csv`` (prompt, answer_a, answer_b: the two answers in a
    seeded random order, no label) from the comparisons ``pool``. Returns the hidden choice of each pool row:
    (prompt, answer_a, answer_b) as written -> the chosen answer's text."""
    end = max(labelled.stop, pool.stop)
    with open(comparisons_dir / "batch13.json", encoding="utf-8") as fh:
        recs = [json.loads(line) for _, line in zip(range(end), fh)]
    with open(folder / "labelled.jsonl", "w", encoding="utf-8") as fh:
        for r in recs[labelled]:
            s = [x["text"] for x in r["summaries"]]
            fh.write(json.dumps({"prompt": r["info"]["post"], "chosen": s[r["choice"]], "rejected": s[1 - r["choice"]]}) + "\n")
    rng = np.random.default_rng(seed)
    truth = {}
    with open(folder / "pool.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "answer_a", "answer_b"])
        for r in recs[pool]:
            s = [x["text"] for x in r["summaries"]]
            chosen = s[r["choice"]]
            if rng.random() < 0.5:
                s = s[::-1]
            truth[(r["info"]["post"], s[0], s[1])] = chosen
            w.writerow([r["info"]["post"], s[0], s[1]])
    return truth
