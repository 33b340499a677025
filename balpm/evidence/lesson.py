"""The guided lesson's facts: every number of the dashboard's lesson page, read from a runs folder.

The lesson walks the teaching world's story in steps (the world, where BALD's labels went and why,
where BAL-PM's went, the curves with verdicts, the ablations with verdicts, where it stops holding).
Each step's sentence and chart come from :func:`build`, which reads the runs through :mod:`balpm.experiment.runs`
and :mod:`balpm.evidence.report` and computes nothing a table elsewhere would contradict: the verdicts are
:func:`balpm.evidence.report.summarize`'s (= ``balpm report --json`` on the same runs, ablation variants left
out), worded by :mod:`balpm.evidence.story`; the variants' verdicts are :func:`balpm.evidence.stats.compare_values` on
the per-seed AULCs (paired over shared seeds), the Ablations page's rule. No number is written here.

Regions are named from the world's own data: the ``cluster`` column of each run's dataset snapshot
(``_datasets/<data_hash>/table.parquet``), named by :data:`balpm.data.synthetic.TEACHING_CLUSTER_NAMES`
where the world is the teaching one; the *noisy* region is the one whose true preferences lie closest
to a coin flip (``true_prob`` nearest 0.5), measured, not assumed. No streamlit here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm.data.synthetic import TEACHING_CLUSTER_NAMES
from balpm.evidence import report, stats, story
from balpm.experiment import ablations, runs
from balpm.experiment.presets import uses_teaching_world

__all__ = ["Lesson", "RunFacts", "build", "cluster_name", "region_names", "teaching_runs"]

HEADLINE = stats.HEADLINE_METRIC


def cluster_name(value: Any, names: Sequence[str] | None = None) -> str:
    """A cluster id as words: ``names[i]`` for an integer id inside ``names``, else ``cluster i``
    (``3.0`` reads ``cluster 3``, never ``3.0000``); a non-numeric value as it is."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(f):
        return "none"
    i = int(round(f))
    if names is not None and 0 <= i < len(names) and abs(f - i) < 1e-9:
        return str(names[i])
    return f"cluster {i}" if abs(f - i) < 1e-9 else f"cluster {f:g}"


def region_names(table: pd.DataFrame) -> dict[int, str]:
    """Cluster id -> name for a dataset table with a ``cluster`` column (the teaching world's names for
    the synthetic source, ``cluster i`` otherwise); empty when the data has no clusters."""
    if "cluster" not in table.columns:
        return {}

    synthetic = "source" in table.columns and (table["source"].astype(str) == "synthetic").all()
    ids = sorted({int(c) for c in pd.to_numeric(table["cluster"], errors="coerce").dropna()})
    return {c: cluster_name(c, TEACHING_CLUSTER_NAMES if synthetic else None) for c in ids}


@dataclass
class RunFacts:
    """What the lesson reads of one run: identity, config, rounds, acquisitions with their region."""

    run_id: str
    label: str
    policy: str
    seed: int
    setting: str
    cfg: Any
    rounds: pd.DataFrame
    acq: pd.DataFrame
    table: pd.DataFrame | None
    variant: str | None = None  # the ablation's short label, None for a policy run


@dataclass
class Lesson:
    """Everything the lesson page shows; see :func:`build`. ``teaching`` False: a real-data landing."""

    teaching: bool
    setting: str | None
    summary: dict[str, Any] | None
    runs: list[RunFacts]
    regions: dict[int, str] = field(default_factory=dict)
    noisy_region: int | None = None
    world: pd.DataFrame | None = None          # per region: pool comparisons, share, coin-flip distance
    shares: pd.DataFrame | None = None         # per label x region: share of acquired labels
    u_by_region: pd.DataFrame | None = None    # per label x region: mean U at round 0 (pool scores)
    prompts: pd.DataFrame | None = None        # per label x round: distinct prompts per batch
    top_u_share: dict[str, float] = field(default_factory=dict)  # label -> share of picks at its prompt's top U
    top_u_chance: dict[str, float] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    ablation_verdicts: list[dict[str, Any]] = field(default_factory=list)
    iid_verdicts: list[str] = field(default_factory=list)  # the same world with test=pool, when in the folder
    conditions: list[str] = field(default_factory=list)
    headroom: list[str] = field(default_factory=list)
    mechanism: str = ""

    def label_names(self) -> dict[str, str]:
        """Label -> how the sentences name it (BAL-PM, BALD, random)."""
        return {r.label: story.display_name(r.label, r.policy) for r in self.runs if r.variant is None}


def _table(root: Path, meta: dict[str, Any], memo: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
    h = meta.get("data_hash")
    if not h:
        return None
    if h not in memo:
        try:
            path = runs.safe_path(root, Path(runs.DATASETS_DIR) / str(h) / "table.parquet")
            memo[h] = pd.read_parquet(path, columns=["pair_id", "prompt_id", "split", "source", "cluster", "true_prob"])
        except Exception:  # noqa: BLE001 - a snapshot that cannot be read (or without clusters): no regions
            memo[h] = None
    return memo[h]


def _facts(root: Path, loaded: report.LoadedRun, memo: dict[str, pd.DataFrame | None]) -> RunFacts | None:
    try:
        run = runs.open_run(root, loaded.run_id)
        acq = run.acquisitions()
        cfg, meta = run.config, run.meta
    except Exception:  # noqa: BLE001 - unreadable: not part of the lesson
        return None
    table = _table(root, meta, memo)
    if table is not None and "cluster" in table.columns and len(acq):
        cl = table.drop_duplicates("pair_id").set_index("pair_id")["cluster"]
        acq = acq.assign(cluster=acq["pair_id"].map(cl))
    v = str(cfg.name)[len(ablations.NAME_PREFIX):] if str(cfg.name).startswith(ablations.NAME_PREFIX) else None
    if v is None and ablations.is_variant(cfg):
        v = loaded.label
    return RunFacts(loaded.run_id, loaded.label, loaded.policy, int(loaded.seed), loaded.setting, cfg, loaded.rounds,
                    acq, table, v)


def teaching_runs(facts: Sequence[RunFacts]) -> tuple[str | None, list[RunFacts]]:
    """The teaching world's most populated setting (policy runs, the classic world) and its runs."""
    classic = [f for f in facts if uses_teaching_world(f.cfg) and not f.cfg.data.world]
    counts: dict[str, int] = {}
    for f in classic:
        if f.variant is None:
            counts[f.setting] = counts.get(f.setting, 0) + 1
    if not counts:
        return None, []
    best = max(counts, key=lambda s: counts[s])
    return best, [f for f in classic if f.setting == best]


def _world(facts: Sequence[RunFacts], names: dict[int, str]) -> tuple[pd.DataFrame | None, int | None]:
    rows = []
    for f in facts:
        t = f.table
        if t is None or "cluster" not in t.columns:
            continue
        train = t[t["split"].astype(str) == "train"] if "split" in t.columns else t
        g = train.groupby("cluster")
        part = pd.DataFrame({"comparisons": g.size(), "prompts": g["prompt_id"].nunique()})
        if "true_prob" in train.columns:
            part["coin_flip_distance"] = g["true_prob"].apply(lambda p: float(np.mean(np.abs(p.to_numpy(float) - 0.5))))
        part["seed"] = f.seed
        rows.append(part.reset_index())
        if len(rows) >= 8:
            break
    if not rows:
        return None, None
    w = pd.concat(rows).groupby("cluster").mean(numeric_only=True).drop(columns="seed")
    w["share"] = w["comparisons"] / w["comparisons"].sum()
    w["region"] = [names.get(int(c), cluster_name(c)) for c in w.index]
    noisy = int(w["coin_flip_distance"].idxmin()) if "coin_flip_distance" in w.columns else None
    return w.reset_index(), noisy


def _shares(facts: Sequence[RunFacts], names: dict[int, str]) -> pd.DataFrame | None:
    rows = []
    for f in facts:
        if f.variant is not None or "cluster" not in f.acq.columns or not len(f.acq):
            continue
        s = f.acq["cluster"].value_counts(normalize=True)
        for c, v in s.items():
            rows.append({"label": f.label, "seed": f.seed, "cluster": int(c), "share": float(v)})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    # a region a seed never picked counts as 0 for that seed
    full = df.pivot_table(index=["label", "seed"], columns="cluster", values="share", fill_value=0.0).stack()
    out = full.groupby(level=["label", "cluster"]).mean().rename("share").reset_index()
    out["region"] = [names.get(int(c), cluster_name(c)) for c in out["cluster"]]
    return out


def _u_by_region(root: Path, facts: Sequence[RunFacts], names: dict[int, str], per_label: int = 4) -> pd.DataFrame | None:
    rows = []
    taken: dict[str, int] = {}
    for f in facts:
        # round 0's ensemble is the same for every policy of a seed (same initial set): BALD's runs say it
        if f.variant is not None or f.policy != "bald" or f.table is None or "cluster" not in f.table:
            continue
        if taken.get(f.label, 0) >= per_label:
            continue
        try:
            scores = runs.open_run(root, f.run_id).pool_scores(0)
        except Exception:  # noqa: BLE001
            scores = None
        if scores is None or "u" not in scores.columns:
            continue
        taken[f.label] = taken.get(f.label, 0) + 1
        cl = f.table.drop_duplicates("pair_id").set_index("pair_id")["cluster"]
        s = scores.assign(cluster=scores["pair_id"].map(cl)).dropna(subset=["cluster"])
        members = [c for c in s.columns if c.startswith("p") and c[1:].isdigit()]
        spread = s[members].std(axis=1) if len(members) >= 2 else pd.Series(np.nan, index=s.index)
        s = s.assign(member_spread=spread)
        for c, g in s.groupby("cluster"):
            rows.append({"label": f.label, "seed": f.seed, "cluster": int(c), "u": float(g["u"].mean()),
                         "member_spread": float(g["member_spread"].mean())})
    if not rows:
        return None
    out = pd.DataFrame(rows).groupby(["label", "cluster"]).mean(numeric_only=True).drop(columns="seed").reset_index()
    out["region"] = [names.get(int(c), cluster_name(c)) for c in out["cluster"]]
    return out


def _prompts(facts: Sequence[RunFacts]) -> pd.DataFrame | None:
    rows = [f.rounds[["round", "batch_unique_prompts"]].assign(label=f.label, seed=f.seed)
            for f in facts if f.variant is None and f.policy != stats.CEILING_POLICY and "batch_unique_prompts" in f.rounds]
    if not rows:
        return None
    df = pd.concat(rows).dropna(subset=["batch_unique_prompts"])
    df = df[df["batch_unique_prompts"] > 0]  # the last round trains and acquires nothing
    return df.groupby(["label", "round"])["batch_unique_prompts"].mean().reset_index()


def _top_u(root: Path, facts: Sequence[RunFacts], per_label: int = 4) -> tuple[dict[str, float], dict[str, float]]:
    """Per label: share of acquired comparisons that had the highest U among their prompt's comparisons still in
    the pool at that round, and the share a pick at random inside the prompt would have (1 / comparisons)."""
    hit: dict[str, list[float]] = {}
    chance: dict[str, list[float]] = {}
    for f in facts:
        if f.variant is not None or f.policy != "balpm" or not len(f.acq) or len(hit.get(f.label, [])) >= per_label:
            continue
        try:
            run = runs.open_run(root, f.run_id)
            rounds = run.pool_score_rounds()
        except Exception:  # noqa: BLE001
            continue
        h, c = [], []
        for rnd in rounds:
            scores = run.pool_scores(rnd)
            picks = f.acq[f.acq["round"] == rnd]
            if scores is None or not len(picks) or "u" not in scores.columns:
                continue
            top = scores.groupby("prompt_id")["u"].transform("max")
            size = scores.groupby("prompt_id")["u"].transform("size")
            s = scores.assign(top=scores["u"] >= top - 1e-12, size=size).set_index("pool_index")
            got = s.reindex(picks["pool_index"].to_numpy())
            got = got[got["size"] > 1]  # a prompt with one comparison left leaves U nothing to choose
            h.extend(got["top"].astype(float).tolist())
            c.extend((1.0 / got["size"]).tolist())
        if h:
            hit.setdefault(f.label, []).append(float(np.mean(h)))
            chance.setdefault(f.label, []).append(float(np.mean(c)))
    return ({k: float(np.mean(v)) for k, v in hit.items()}, {k: float(np.mean(v)) for k, v in chance.items()})


def _ablation_verdicts(facts: Sequence[RunFacts]) -> list[dict[str, Any]]:
    base = [f for f in facts if f.variant is None and f.policy == "balpm"]
    if not base:
        return []
    base_label = max({f.label for f in base}, key=lambda lab: sum(f.label == lab for f in base))
    base = [f for f in base if f.label == base_label]
    _, base_aulc = stats.seed_aulcs(base, HEADLINE)
    out = []
    by_variant: dict[str, list[RunFacts]] = {}
    for f in facts:
        if f.variant is not None:
            by_variant.setdefault(f.variant, []).append(f)
    order = {v.short: i for i, v in enumerate(ablations.PAPER)}
    for name in sorted(by_variant, key=lambda n: (order.get(n, 99), n)):
        group = by_variant[name]
        _, aulc = stats.seed_aulcs(group, HEADLINE)
        if not aulc or not base_aulc:
            continue
        cmp = stats.compare_values(aulc, base_aulc, stats.metric_direction(HEADLINE))
        out.append({"variant": name, "base": base_label, "seeds": len(aulc), **cmp})
    return out


def _iid_verdicts(loaded: Sequence[report.LoadedRun], facts: Sequence[RunFacts]) -> list[str]:
    """Verdicts on the teaching world with an i.i.d. test set (``data.world`` with ``test=pool``)."""
    iid = {f.run_id for f in facts if uses_teaching_world(f.cfg) and "test=pool" in str(f.cfg.data.world).replace(" ", "")
           and f.variant is None}
    group = [r for r in loaded if r.run_id in iid]
    if not group:
        return []
    summary = report.summarize(group)
    settings = sorted({r.setting for r in group}, key=lambda s: -sum(r.setting == s for r in group))
    return story.verdict_lines(summary, settings[0])


def build(root: str | Path) -> Lesson:
    """Read ``root`` and compute the lesson (the teaching world's, or the real-data landing's facts).

    Raises :class:`balpm.errors.BalpmError` when the folder has no complete run (``report.collect``)."""
    root = Path(root)
    loaded, skipped = report.collect([root])
    by_id = {r.run_id: r for r in loaded}
    memo: dict[str, pd.DataFrame | None] = {}
    facts = [f for f in (_facts(root, r, memo) for r in loaded) if f is not None]
    setting, world = teaching_runs(facts)
    if setting is None:  # real data: what these runs can and cannot show
        policy = [by_id[f.run_id] for f in facts if f.variant is None]
        if not policy:
            return Lesson(False, None, None, facts)
        summary = report.summarize(policy, skipped=skipped)
        counts: dict[str, int] = {}
        for r in policy:
            counts[r.setting] = counts.get(r.setting, 0) + 1
        best = max(counts, key=lambda s: counts[s])
        return Lesson(False, best, summary, [f for f in facts if f.setting == best],
                      verdicts=story.verdict_lines(summary, best), headroom=story.headroom_lines(summary, best))
    policy_runs = [by_id[f.run_id] for f in world if f.variant is None]
    summary = report.summarize(policy_runs, skipped=skipped)
    names: dict[int, str] = {}
    for f in world:
        if f.table is not None:
            names = region_names(f.table)
            break
    w, noisy = _world(world, names)
    lesson = Lesson(True, setting, summary, world, names, noisy, w, _shares(world, names), _u_by_region(root, world, names),
                    _prompts(world))
    lesson.top_u_share, lesson.top_u_chance = _top_u(root, world)
    lesson.verdicts = story.verdict_lines(summary, setting)
    lesson.ablation_verdicts = _ablation_verdicts(world)
    lesson.iid_verdicts = _iid_verdicts(loaded, facts)
    mech = story.mechanisms(summary, root, setting)
    region = f"the noisy {names[noisy]} region" if noisy is not None and noisy in names else "the noisy region"
    lesson.mechanism = story.mechanism_line(mech, summary, setting, region=region)
    lesson.conditions = story.teaching_conditions(mech)
    lesson.headroom = story.headroom_lines(summary, setting)
    return lesson
