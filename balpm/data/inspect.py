"""``balpm data inspect``: what a set of data files holds, as a readable table or one JSON object."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from balpm.data.load import load_table
from balpm.data.schema import SPLITS
from balpm.errors import printable


def inspect_data(paths: Iterable[str | Path], *, format: str = "auto", ood_paths: Iterable[str | Path] = (),
                 skip_bad: bool = False, columns: Mapping[str, str | None] | None = None,
                 ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0, keep_original: bool = False,
                 subsample: int = 0) -> dict[str, Any]:
    """Load the files exactly as a run would and return the load report (a JSON-ready dict)."""
    result = load_table(list(paths), format=format, ood_paths=list(ood_paths), skip_bad=skip_bad, columns=columns,
                        ratios=ratios, seed=seed, keep_original=keep_original, subsample=subsample)
    return result.report


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def format_report(report: dict[str, Any]) -> str:
    """A load report as a plain-text summary: totals, a source x split table, files, bad-row reasons."""
    splits = [s for s in SPLITS if s in report["per_split"]] + sorted(set(report["per_split"]) - set(SPLITS))
    out = [
        (f"rows {report['rows']:,}   prompts {report['prompts']:,}   duplicates dropped {report['duplicates_dropped']:,}"
         f"   identical answers dropped {report.get('identical_answers_dropped', 0):,}"
         f"   bad rows skipped {report['bad_rows']:,}"),
    ]
    if report.get("hh_split_early"):
        out.append(f"HH pairs split before their last assistant turn (longest shared prefix of whole turns): "
                   f"{report['hh_split_early']:,}")
    cpp = report.get("comparisons_per_prompt", {})
    if cpp:
        out.append(f"comparisons per prompt: mean {cpp['mean']:.2f}, median {cpp['median']:.1f}, max {cpp['max']}")
    if report["rows"]:
        rows = []
        for src, by_split in report["per_source_split"].items():
            rows.append([printable(src)] + [f"{by_split.get(s, 0):,}" for s in splits]
                        + [f"{report['per_source'][src]:,}", f"{report['prompts_per_source'].get(src, 0):,}"])
        rows.append(["all"] + [f"{report['per_split'].get(s, 0):,}" for s in splits] + [f"{report['rows']:,}", f"{report['prompts']:,}"])
        rows.append(["prompts"] + [f"{report['prompts_per_split'].get(s, 0):,}" for s in splits] + ["", ""])
        out += [""] + _grid(["source"] + splits + ["rows", "prompts"], rows)
    if report.get("files"):
        out += [""] + _grid(
            ["file", "format", "ood", "rows read", "bad", "duplicates", "identical"],
            [[printable(f["path"]), f["format"], "yes" if f["ood"] else "", f"{f['rows_read']:,}", str(f["bad_rows"]),
              str(f.get("duplicates_dropped", 0)), str(f.get("identical_answers_dropped", 0))]
             for f in report["files"]],
        )
    if report.get("bad_reasons"):
        out += ["", "bad rows by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(report["bad_reasons"].items()))]
        out += [f"  e.g. {printable(m)}" for m in report.get("bad_examples", [])[:3]]
    split = report.get("split", {})
    if split.get("method") == "seeded":
        out += ["", f"split: seeded prompt-grouped, ratios {split['ratios']}, seed {split['seed']}"]
    elif split.get("method") == "original":
        out += ["", f"split: the source's own splits ({split.get('prompts_moved', 0)} prompts moved to avoid leakage)"]
    out += [f"note: {printable(n)}" for n in report.get("notes", [])]
    return "\n".join(out)
