"""Results over many worlds: paired effects per world as shares of headroom, verdicts under Holm, the
share of worlds with each verdict, and the regime map (effect against each world knob) with the
mechanism measured per world (issue 13). ``balpm report --worlds RUNS_DIR`` and the dashboard's Worlds
page both call :func:`worlds_summary`.

Definitions (all on the headline metric, test log-likelihood; ``balpm.evidence.stats`` for the rules):

* **World** = a setting of the runs folder (runs sharing everything but policy and seed; a worlds
  sweep gives each world its own setting). Its knobs come from the runs' ``data.world`` read ONLY
  through :func:`balpm.data.worlds.parse_world` (``""``: the classic teaching world); runs on data
  files have no knobs.
* **Comparisons** per world: ``balpm - random``, ``bald - random``, ``balpm - bald``, every BAL-PM
  ablation present (a label ``balpm <knob>=...``) ``- balpm``, and every other policy (batchbald, epig,
  coreset, dopt, ...) ``- random`` and ``- balpm``.
  Each is the paired (by seed) difference of per-seed AULCs with its 95% Student-t interval, its
  two-sided p-value and the minimal detectable effect at 80% power (:func:`balpm.evidence.stats.mde`).
* **Headroom** of a world = the Bayes-optimal test log-likelihood (truth.json's
  ``test_log_likelihood``, mean over random's seeds) minus random's mean AULC; else (no truth.json)
  the ``full`` runs' mean final value minus random's AULC; else unknown. ``effect_share`` = effect /
  headroom (and its interval likewise), ``mde_share`` = MDE / headroom.
* **Multiplicity**: Holm's step-down over EVERY comparison of the table (worlds x comparisons);
  ``verdict`` is per comparison, ``holm_verdict`` family-wise. ``verdict_shares`` counts worlds per
  verdict for each comparison, under both.
* **Regime map**: per comparison and knob, over the worlds, ``y`` = ``effect_share`` (``effect`` when
  some world has no headroom). A numeric knob with >= 4 distinct values: Spearman's rho with a 95%
  interval from Fisher's z with the Bonett-Wright standard error ``sqrt((1 + rho^2 / 2) / (n - 3))``
  (n >= 5 worlds); a knob with fewer values (or text, e.g. ``test``): the median of ``y`` and the
  count per value. A knob constant over the worlds is reported as such. The same summary sets the
  effect against each mechanism measure (:data:`MECHANISMS`: the policy's and the reference's noisy
  share of acquired labels minus the pool's, unique prompts per batch, the beta*H / U spread). The map
  is exploratory: each rho's interval is per cell; ``p_holm`` adjusts the knob correlations' p-values
  (scipy's) over the whole map with Holm.
* **Mechanism** per world and policy (means over seeds): ``noisy_labels`` = share of the ACQUIRED
  labels (after the initial set) in the noisy region, from rounds.parquet's ``noisy_share`` (round 0
  and last: ``(s_T N_T - s_0 N_0) / (N_T - N_0)``), next to the pool's share (truth.json
  ``noisy_share_pool``); ``unique_prompts`` = distinct prompts per acquired batch over batch size,
  from acquisitions.parquet; ``beta_h_to_u`` = the median over selecting rounds of rounds.parquet's
  ``beta_h_to_u_std`` (BAL-PM family only: > 10 means beta*H decides, U breaks ties).
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from balpm import safe_yaml
from balpm.data.worlds import PRIOR, parse_world
from balpm.errors import BalpmError
from balpm.evidence import report, stats
from balpm.experiment import runs

METRIC = stats.HEADLINE_METRIC
BASELINE = "random"
#: the comparisons every world is asked for (policy, reference), in this order
CORE = (("balpm", "random"), ("bald", "random"), ("balpm", "bald"))
MIN_SPEARMAN_WORLDS = 5
MIN_DISTINCT_FOR_RHO = 4
CLASSIC = "classic"


# ---- reading ------------------------------------------------------------------------------------
def world_of(run: report.LoadedRun) -> tuple[str, dict[str, Any]]:
    """``(world name, knobs)`` of a run: the canonical ``data.world`` spec (``classic`` for ``""``) and its
    knobs for the synthetic teaching world; the data files' names and no knobs for runs on data files."""
    cfg = runs.open_run(run.path.parent, run.run_id).config
    if cfg.data.paths:
        return "data: " + ", ".join(Path(p).name for p in cfg.data.paths), {}
    if cfg.data.synthetic != "teaching":
        return f"synthetic: {cfg.data.synthetic}", {}
    spec = parse_world(getattr(cfg.data, "world", "") or "")
    raw = getattr(cfg.data, "world", "") or ""
    return (spec.spec() if raw.strip() else CLASSIC), dict(spec.knobs())


def _policy_frame(group: Sequence[report.LoadedRun]) -> dict[str, Any]:
    """Mechanism of one policy in one world (means over its seeds)."""
    noisy, unique, ratio = [], [], []
    for r in group:
        rd = r.rounds
        if "noisy_share" in rd.columns and len(rd) >= 2:
            s0, sT = float(rd["noisy_share"].iloc[0]), float(rd["noisy_share"].iloc[-1])
            n0, nT = float(rd["labelled"].iloc[0]), float(rd["labelled"].iloc[-1])
            if math.isfinite(s0) and math.isfinite(sT) and nT > n0:
                noisy.append((sT * nT - s0 * n0) / (nT - n0))
        try:
            acq = runs.open_run(r.path.parent, r.run_id).acquisitions()
        except BalpmError:
            acq = pd.DataFrame()
        if len(acq):
            per = acq.groupby("round")["prompt_id"].agg(lambda s: s.nunique() / len(s))
            unique.append(float(per.mean()))
        if "beta_h_to_u_std" in rd.columns:
            v = rd["beta_h_to_u_std"].to_numpy(dtype=np.float64)
            v = v[~np.isnan(v)]
            if v.size:
                ratio.append(float(np.median(v)))
    return {"n_seeds": len(group), "seeds": sorted(int(r.seed) for r in group),
            "noisy_labels": _mean(noisy), "unique_prompts": _mean(unique), "beta_h_to_u": _mean(ratio)}


def _mean(v: Sequence[float]) -> float | None:
    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def main_labels(policies: Mapping[str, str]) -> dict[str, str]:
    """Policy -> its main label in one world: the label equal to the policy's name, else the one with the
    fewest knobs (``balpm beta=0.1`` at the teaching preset); other labels of that policy are its ablations."""
    out: dict[str, str] = {}
    for lab, pol in sorted(policies.items(), key=lambda kv: (kv[0] != kv[1], len(kv[0].split()), kv[0])):
        out.setdefault(pol, lab)
    return out


def _comparisons(policies: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(name, policy label, reference label)`` asked of one world: :data:`CORE` where both policies are
    present (named by policy: ``balpm - random``), then each ablation ``<label> - balpm`` and every other
    policy ``- random``."""
    main = main_labels(policies)
    out = [(f"{a} - {b}", main[a], main[b]) for a, b in CORE if a in main and b in main]
    for lab in sorted(policies):
        pol = policies[lab]
        if pol == stats.CEILING_POLICY or (pol in ("random", "bald", "balpm") and main.get(pol) == lab):
            continue
        ref = "balpm" if pol == "balpm" else BASELINE
        if ref in main and main[ref] != lab:
            out.append((f"{lab} - {ref}", lab, main[ref]))
        if pol not in ("random", "bald", "balpm") and "balpm" in main:  # another policy: also against BAL-PM
            out.append((f"{lab} - balpm", lab, main["balpm"]))
    return out


# ---- the summary --------------------------------------------------------------------------------
def worlds_summary(loaded: Sequence[report.LoadedRun], *, level: float = stats.LEVEL, n_boot: int = stats.N_BOOT,
                   seed: int = stats.SEED, skipped: Sequence[dict[str, Any]] = (),
                   names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole many-worlds analysis as one JSON-ready dict::

        {"metric", "level", "power", "multiplicity": {method, alpha, m, family, statement},
         "worlds": [{setting, world, name (w<i> of worlds.yaml, else #<position>), knobs, truth, ceiling, ceiling_source, baseline_aulc, headroom,
                     policies: {label: {n_seeds, seeds, noisy_labels, unique_prompts, beta_h_to_u, aulc}},
                     noisy_pool}],
         "table": [{setting, world, comparison, policy, reference, n, paired, mean, ci, effect_share, share_ci,
                    p_value, p_holm, verdict, holm_verdict, mde, mde_share, headroom}],
         "verdict_shares": {comparison: {n_worlds, raw: {verdict: count}, holm: {verdict: count}}},
         "distribution": {comparison: {median, q25, q75, n, y}},
         "regime": {comparison: {y, knobs: {knob: {kind: spearman|levels|constant, ...}},
                                 mechanism: {measure: {...}}}},
         "knobs": [names], "runs", "skipped",
         "aa_pooled": {worlds, splits, calls, false_positive_rate, fp_ci, per_world_rates}}

    Each world also carries ``aa``: the A/A check (:func:`balpm.evidence.stats.aa_check`) on random's seeds;
    ``aa_pooled`` adds its false calls over all worlds (the Clopper-Pearson interval treats the splits
    as independent, which splits of one world's seeds are not).
    """
    if not loaded:
        raise BalpmError("no complete runs to compare; run a worlds sweep first (balpm worlds, balpm sweep)")
    kept, dups = stats.dedupe(loaded)
    by_setting: dict[str, list[report.LoadedRun]] = {}
    for r in kept:
        by_setting.setdefault(r.setting, []).append(r)
    worlds, table = [], []
    knob_names: list[str] = []
    for setting in sorted(by_setting):
        group = by_setting[setting]
        name, knobs = world_of(group[0])
        for k in knobs:
            if k not in knob_names:
                knob_names.append(k)
        labels: dict[str, list[report.LoadedRun]] = {}
        for r in group:
            labels.setdefault(r.label, []).append(r)
        full = labels.pop(stats.CEILING_POLICY, [])
        policies = {lab: g[0].policy for lab, g in labels.items()}
        aulcs = {lab: stats.seed_aulcs(g, METRIC) for lab, g in labels.items()}
        main = main_labels(policies)
        base = labels.get(main.get(BASELINE, ""), [])
        base_aulc = _mean(list(aulcs[main[BASELINE]][1].values())) if base else None
        ceiling = stats.truth_ceiling(base or group, METRIC)
        source = "truth" if ceiling is not None else None
        if ceiling is None and full:
            ceiling = _mean([float(r.rounds[METRIC].iloc[-1]) for r in full if len(r.rounds)])
            source = stats.CEILING_POLICY if ceiling is not None else None
        headroom = ceiling - base_aulc if ceiling is not None and base_aulc is not None else None
        truth = [getattr(r, "truth", None) or {} for r in (base or group)]
        noisy_pool = _mean([t["noisy_share_pool"] for t in truth if isinstance(t.get("noisy_share_pool"), (int, float))])
        aa = stats.aa_check({METRIC: aulcs[main[BASELINE]][1]} if base else {}, level=level, n_boot=n_boot, seed=seed)
        world = {"setting": setting, "world": name, "knobs": knobs, "name": (names or {}).get(name), "ceiling": ceiling, "ceiling_source": source,
                 "baseline_aulc": base_aulc, "headroom": headroom, "noisy_pool": noisy_pool,
                 "aa": {k: aa.get(k) for k in ("splits", "possible_splits", "n_seeds", "calls", "false_positive_rate",
                                               "fp_ci", "noise")},
                 "policies": {lab: {**_policy_frame(g), "aulc": _mean(list(aulcs[lab][1].values()))}
                              for lab, g in sorted(labels.items())}}
        worlds.append(world)
        for comp, pol, ref in _comparisons(policies):
            xp, ap = aulcs[pol]
            xr, ar = aulcs[ref]
            row: dict[str, Any] = {"setting": setting, "world": name, "comparison": comp, "policy": pol,
                                   "reference": ref, "headroom": headroom}
            if not np.array_equal(xp, xr):
                row.update(error="labelled sizes differ; use the same loop settings", n=0, verdict="no detectable difference",
                           mean=None, ci=[None, None], p_value=None, mde=None, paired=False)
            else:
                c = stats.compare_values(ap, ar, 1, level=level, n_boot=n_boot, seed=seed)
                row.update({k: c[k] for k in ("mean", "ci", "n", "paired", "p_value", "mde", "verdict", "se", "df")})
            h = headroom if headroom is not None and headroom > 0 else None
            row["effect_share"] = row["mean"] / h if h and row["mean"] is not None else None
            row["share_ci"] = [c_ / h if h and c_ is not None else None for c_ in row["ci"]]
            row["mde_share"] = row["mde"] / h if h and row["mde"] is not None else None
            table.append(row)
    def order(w: Mapping[str, Any]) -> tuple:
        n = w.get("name")
        return (n is None, int(n[1:]) if n else 0, w["setting"])

    worlds.sort(key=order)
    for i, w in enumerate(worlds):
        w["name"] = w["name"] or f"#{i}"  # no worlds.yaml: the position in this report
    rank = {w["setting"]: i for i, w in enumerate(worlds)}
    table.sort(key=lambda r: rank[r["setting"]])
    for r in table:
        r["name"] = worlds[rank[r["setting"]]]["name"]
    adj = stats.holm([r.get("p_value") for r in table])
    hv = stats.holm_verdicts([r.get("mean") for r in table], adj, [1] * len(table), level)
    for r, p, v in zip(table, adj, hv):
        r["p_holm"], r["holm_verdict"] = p, v
    m = sum(p is not None for p in adj)
    comps = list(dict.fromkeys(r["comparison"] for r in table))
    out: dict[str, Any] = {
        "metric": METRIC, "level": level, "power": stats.POWER, "worlds": worlds, "table": table, "knobs": knob_names,
        "comparisons": comps, "runs": len(kept), "skipped": list(skipped) + [
            {"run_id": d["run_id"], "state": "duplicate", "reason": f"same label and seed as {d['same_as']}"} for d in dups],
        "multiplicity": {"method": "holm", "alpha": 1.0 - level, "m": m, "family": "every comparison of the table "
                         "(worlds x comparisons)",
                         "statement": f"Holm's step-down over all {m} comparisons of the table (worlds x comparisons; "
                                      f"family-wise error <= {1.0 - level:.2f})"},
        "verdict_shares": {}, "distribution": {}, "regime": {},
    }
    aa_worlds = [w["aa"] for w in worlds if w["aa"].get("splits")]
    splits, calls = sum(a["splits"] for a in aa_worlds), sum(a["calls"] for a in aa_worlds)
    out["aa_pooled"] = {"worlds": len(aa_worlds), "splits": splits, "calls": calls,
                        "false_positive_rate": calls / splits if splits else None,
                        "fp_ci": stats.fp_interval(calls, splits, level),
                        "per_world_rates": [a["false_positive_rate"] for a in aa_worlds]}
    for comp in comps:
        rows = [r for r in table if r["comparison"] == comp]
        out["verdict_shares"][comp] = {
            "n_worlds": len(rows),
            "raw": {v: sum(r["verdict"] == v for r in rows) for v in stats.VERDICTS},
            "holm": {v: sum(r.get("holm_verdict") == v for r in rows) for v in stats.VERDICTS}}
        use_share = all(r["effect_share"] is not None for r in rows)
        ykey = "effect_share" if use_share else "mean"
        ys = np.array([r[ykey] for r in rows if r[ykey] is not None], dtype=np.float64)
        out["distribution"][comp] = {"y": ykey, "n": int(ys.size),
                                     "median": float(np.median(ys)) if ys.size else None,
                                     "q25": float(np.quantile(ys, 0.25)) if ys.size else None,
                                     "q75": float(np.quantile(ys, 0.75)) if ys.size else None}
        knob_rows = {r["setting"]: r for r in rows}
        by_world = {w["setting"]: w for w in worlds}
        out["regime"][comp] = {"y": ykey, "knobs": {
            k: regime_summary([by_world[s]["knobs"].get(k) for s in knob_rows], [knob_rows[s][ykey] for s in knob_rows])
            for k in knob_names}, "mechanism": {
            name: regime_summary([fn(by_world[s], r) for s, r in knob_rows.items()], [r[ykey] for r in knob_rows.values()])
            for name, fn in MECHANISMS.items()}}
    cells = [x for reg in out["regime"].values() for x in reg["knobs"].values() if x["kind"] == "spearman"]
    for x, ph in zip(cells, stats.holm([x.get("p_value") for x in cells])):
        x["p_holm"] = ph  # Holm over the regime map's knob correlations (exploratory: the rho intervals are per cell)
    out["regime_multiplicity"] = {"method": "holm", "m": sum(x.get("p_value") is not None for x in cells),
                                  "family": "every Spearman correlation of a knob with an effect in the regime map"}
    return out


def _excess_noisy(world: Mapping[str, Any], label: str) -> float | None:
    p = world["policies"].get(label) or {}
    if p.get("noisy_labels") is None or world.get("noisy_pool") is None:
        return None
    return float(p["noisy_labels"] - world["noisy_pool"])


#: mechanism measures set against each comparison's effect over worlds (the "why" of the regime map)
MECHANISMS = {
    "noisy labels - pool share (policy)": lambda w, r: _excess_noisy(w, r["policy"]),
    "noisy labels - pool share (reference)": lambda w, r: _excess_noisy(w, r["reference"]),
    "unique prompts/batch (policy)": lambda w, r: (w["policies"].get(r["policy"]) or {}).get("unique_prompts"),
    "beta*H / U spread (policy)": lambda w, r: (w["policies"].get(r["policy"]) or {}).get("beta_h_to_u"),
}


def fisher_interval(rho: float, n: int, level: float = stats.LEVEL) -> list[float | None]:
    """95% interval of a Spearman correlation: Fisher's z with the Bonett-Wright SE ``sqrt((1 + rho^2/2)/(n - 3))``."""
    if n < 4 or not math.isfinite(rho) or abs(rho) >= 1.0:  # |rho| = 1: Fisher's z is infinite, no interval
        return [None, None]
    r = min(max(rho, -0.999999), 0.999999)
    z = math.atanh(r)
    se = math.sqrt((1.0 + r * r / 2.0) / (n - 3))
    q = float(sps.norm.ppf(0.5 + level / 2.0))
    return [math.tanh(z - q * se), math.tanh(z + q * se)]


def regime_summary(x: Sequence[Any], y: Sequence[Any]) -> dict[str, Any]:
    """One knob's summary over worlds: Spearman's rho with its Fisher-z interval (numeric knob with >= 4
    distinct values and >= 5 worlds), else the median and count of ``y`` per knob value; ``constant``
    when the knob takes one value."""
    pairs = [(a, float(b)) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(float(b))]
    if not pairs:
        return {"kind": "constant", "n": 0, "values": []}
    xs = [a for a, _ in pairs]
    distinct = sorted(set(xs), key=lambda v: (isinstance(v, str), v))
    if len(distinct) == 1:
        return {"kind": "constant", "n": len(pairs), "values": distinct}
    numeric = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in xs)
    if numeric and len(distinct) >= MIN_DISTINCT_FOR_RHO and len(pairs) >= MIN_SPEARMAN_WORLDS:
        res = sps.spearmanr([float(a) for a in xs], [b for _, b in pairs])
        rho = float(res.statistic)
        return {"kind": "spearman", "n": len(pairs), "rho": rho if math.isfinite(rho) else None,
                "ci": fisher_interval(rho, len(pairs)), "p_value": float(res.pvalue) if math.isfinite(res.pvalue) else None}
    levels = {}
    for v in distinct:
        ys = [b for a, b in pairs if a == v]
        levels[str(v)] = {"median": float(np.median(ys)), "n": len(ys)}
    return {"kind": "levels", "n": len(pairs), "levels": levels}


def worlds_report(paths: Sequence[str | Path], *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED) -> dict[str, Any]:
    """Collect the runs under ``paths`` (balpm.evidence.report.collect) and summarise them over worlds."""
    loaded, skipped = report.collect(paths)
    if not loaded:
        raise BalpmError(f"no complete runs in {', '.join(map(str, paths))} ({len(skipped)} incomplete); "
                         "finish them with balpm run --resume")
    return worlds_summary(loaded, n_boot=n_boot, seed=seed, skipped=skipped, names=world_names(paths))


def world_names(paths: Sequence[str | Path]) -> dict[str, str]:
    """Canonical spec -> ``w<index>`` from the ``worlds.yaml`` that ``balpm worlds`` writes in a runs root
    (its draw order), for the roots given; empty when there is none."""
    out: dict[str, str] = {}
    for raw in paths:
        f = Path(raw) / "worlds.yaml"
        try:
            doc = safe_yaml.load_file(f, f"worlds list {str(f)!r}") if f.is_file() else None
            for w in (doc or {}).get("worlds", []):
                out.setdefault(str(w["spec"]), f"w{int(w['index'])}")
        except (BalpmError, ValueError, TypeError, KeyError, AttributeError):
            continue  # no usable worlds.yaml: worlds are named by their position instead
    return out


# ---- presentation -------------------------------------------------------------------------------
def _f(v: Any, digits: int = 4, signed: bool = False) -> str:
    return stats.fmt_value(v, digits, signed)


def _pct(v: Any) -> str:
    f = stats._num(v)
    return "-" if f is None else f"{f:+.0%}" if abs(f) < 10 else f"{f:+.1f}x"


def world_short(name: str, width: int = 60) -> str:
    """A world's name cut to ``width`` characters (the spec string lists every knob)."""
    return name if len(name) <= width else name[: width - 3] + "..."


def format_text(summary: Mapping[str, Any]) -> str:
    """The plain-text many-worlds report (``balpm report --worlds``)."""
    L = [(f"worlds: {len(summary['worlds'])}   runs: {summary['runs']}   metric: AULC of "
          f"{stats.METRIC_NAMES.get(summary['metric'], summary['metric'])} (paired by seed, "
          f"{summary['level']:.0%} Student-t)"),
         f"multiplicity: {summary['multiplicity']['statement']}; 'verdict' is per comparison, 'Holm' family-wise",
         ("power: MDE = (t_(1-a/2,df) + t_(0.8,df)) x SE, the smallest AULC difference each comparison detects with "
          "80% power; share = value / headroom (Bayes-optimal test LL from truth.json, else the full runs, minus "
          "random's AULC)")]
    aa = summary.get("aa_pooled") or {}
    if aa.get("splits"):
        rates = [r for r in aa["per_world_rates"] if r is not None]
        L.append(f"A/A check (random's seeds split in halves, per world, pooled over {aa['worlds']} worlds): "
                 f"{aa['calls']}/{aa['splits']} splits called a difference (false-positive rate "
                 f"{aa['false_positive_rate']:.3f}, 95% CI [{aa['fp_ci'][0]:.3f}, {aa['fp_ci'][1]:.3f}]; per world "
                 f"{min(rates):.2f} to {max(rates):.2f})")
    L += ["", "share of worlds with each verdict (raw / Holm):"]
    for comp, vs in summary["verdict_shares"].items():
        n = vs["n_worlds"]
        parts = [f"{v} {vs['raw'][v]}/{n} / {vs['holm'][v]}/{n}" for v in stats.VERDICTS]
        d = summary["distribution"][comp]
        what = "effect / headroom" if d["y"] == "effect_share" else "effect"
        L.append(f"  {comp:<28} " + "; ".join(parts)
                 + f"   median {what} {_pct(d['median']) if d['y'] == 'effect_share' else _f(d['median'], 4, True)}"
                   f" [IQR {_pct(d['q25']) if d['y'] == 'effect_share' else _f(d['q25'], 4, True)}, "
                   f"{_pct(d['q75']) if d['y'] == 'effect_share' else _f(d['q75'], 4, True)}]")
    L += ["", "per world (effect = policy minus reference, AULC; share of the world's headroom in parentheses):"]
    head = f"  {'':<6}{'comparison':<24} {'seeds':>5}  {'effect [95% CI]':>28}  {'share':>7}  {'p':>7}  {'p Holm':>7}  " \
           f"{'verdict':<24}  {'Holm':<24}  MDE (share)"
    for w in summary["worlds"]:
        L.append("")
        L.append(f"  {w['name']:<5} {world_short(w['world'], 110)}")
        src = {"truth": "truth.json", stats.CEILING_POLICY: "full runs"}.get(w["ceiling_source"] or "", "unknown")
        mech = "; ".join(
            f"{lab}: noisy {_share(p['noisy_labels'])}, unique prompts/batch {_share(p['unique_prompts'])}"
            + (f", beta*H/U spread {p['beta_h_to_u']:.1f}x" if p.get("beta_h_to_u") is not None else "")
            for lab, p in w["policies"].items())
        L.append(f"        ceiling {_f(w['ceiling'])} ({src}), random AULC {_f(w['baseline_aulc'])}, headroom "
                 f"{_f(w['headroom'], 4, True)}; pool noisy share {_share(w['noisy_pool'])}")
        L.append(f"        mechanism: {mech}")
        L.append(head)
        for r in (r for r in summary["table"] if r["setting"] == w["setting"]):
            eff = f"{_f(r['mean'], 4, True)} {stats.fmt_interval(r['ci'], 4, r['n'])}"
            mde = "-" if r.get("mde") is None else _f(r["mde"]) + (f" ({r['mde_share']:.0%})" if r.get("mde_share") is not None else "")
            L.append(f"  {w['name']:<6}{r['comparison']:<24} {r['n']:>5}  {eff:>28}  {_pct(r['effect_share']):>7}  "
                     f"{_f(r['p_value'], 3):>7}  {_f(r.get('p_holm'), 3):>7}  {r['verdict']:<24}  "
                     f"{r.get('holm_verdict') or '-':<24}  {mde}")
    rm = summary.get("regime_multiplicity") or {}
    L += ["", ("regime map (effect share against each world knob; Spearman rho [95% CI, Fisher z, per cell] or the "
               f"median per value; p Holm over the map's {rm.get('m', 0)} knob correlations):")]
    for comp, reg in summary["regime"].items():
        L.append(f"  {comp}:")
        for k, s in list(reg["knobs"].items()) + [(f"mechanism: {m}", v) for m, v in reg.get("mechanism", {}).items()
                                                   if v["kind"] != "constant"]:
            if s["kind"] == "spearman":
                ci = s["ci"]
                ph = f", p Holm {s['p_holm']:.3f}" if s.get("p_holm") is not None else ""
                L.append(f"    {k:<16} rho {_f(s['rho'], 2, True)} [{_f(ci[0], 2, True)}, {_f(ci[1], 2, True)}]  "
                         f"(n={s['n']} worlds{ph})")
            elif s["kind"] == "levels":
                lv = ", ".join(f"{knob_text(v)}: {_pct(x['median']) if reg['y'] == 'effect_share' else _f(x['median'], 4, True)} "
                               f"(n={x['n']})" for v, x in s["levels"].items())
                L.append(f"    {k:<16} median by value: {lv}")
            else:
                L.append(f"    {k:<16} constant over the worlds ({', '.join(knob_text(v) for v in s.get('values', []))})")
    if summary["skipped"]:
        L.append("")
        L.append(f"skipped {len(summary['skipped'])} run(s): "
                 + ", ".join(f"{s['run_id']} ({s['state']})" for s in summary["skipped"][:8]))
    return "\n".join(L)


def knob_text(v: Any) -> str:
    """A knob value for text: numbers with 3 significant digits."""
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return str(v)


def _share(v: Any) -> str:
    f = stats._num(v)
    return "-" if f is None else f"{f:.0%}"


def _html(text: Any) -> str:
    """Untrusted text (file names, labels) for plotly's HTML-like titles, hovers and tick labels: no tag,
    entity, ``%{field}`` or ``$`` LaTeX (as dashboard/untrusted.plot)."""
    one = " ".join(str(text).split())
    return html.escape(one, quote=False).replace("$", "&#36;").replace("{", "&#123;")


def to_json(summary: Mapping[str, Any]) -> str:
    """One JSON object (NaN as null)."""
    return json.dumps(summary, allow_nan=False, default=lambda o: o.item() if hasattr(o, "item") else str(o))


# ---- figures (plotly; the dashboard's Worlds page and the HTML file) ------------------------------------
COMP_COLORS = {"balpm - random": "#d62728", "bald - random": "#1f77b4", "balpm - bald": "#9467bd"}
VERDICT_SYMBOLS = {"better": "triangle-up", "worse": "triangle-down", "no detectable difference": "circle"}


def distribution_figure(summary: Mapping[str, Any]) -> Any:
    """Box + strip plot per comparison of the per-world effect (share of headroom when every world has one);
    each point is a world, its symbol its Holm verdict."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rng = np.random.default_rng(0)  # horizontal jitter of the points only (display)
    comps = list(summary["comparisons"])
    for i, comp in enumerate(comps):
        d = summary["distribution"][comp]
        rows = [r for r in summary["table"] if r["comparison"] == comp and r.get(d["y"]) is not None]
        ys = [r[d["y"]] * (100 if d["y"] == "effect_share" else 1) for r in rows]
        color = COMP_COLORS.get(comp, "#2ca02c")
        fig.add_trace(go.Box(y=ys, x=[i] * len(ys), name=comp, boxpoints=False, line={"color": color},
                             fillcolor="rgba(0,0,0,0)", width=0.6, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=i + rng.uniform(-0.18, 0.18, len(ys)), y=ys, mode="markers", name=comp,
            marker={"color": color, "size": 9, "line": {"width": 0.5, "color": "#111827"},
                    "symbol": [VERDICT_SYMBOLS.get(r.get("holm_verdict"), "circle") for r in rows]},
            text=[f"{r['name']}: {_html(world_short(r['world'], 80))}<br>{r['holm_verdict']} (Holm)" for r in rows],
            hovertemplate="%{text}<br>%{y:.3g}<extra></extra>"))
    fig.update_xaxes(tickvals=list(range(len(comps))), ticktext=[_html(c) for c in comps], range=[-0.6, len(comps) - 0.4])
    share = all(summary["distribution"][c]["y"] == "effect_share" for c in summary["comparisons"])
    fig.add_hline(y=0, line={"color": "#6b7280", "dash": "dot", "width": 1})
    fig.update_layout(template="plotly_white", height=420, showlegend=False,
                      yaxis_title="effect, % of headroom" if share else "effect (AULC of test log-likelihood)",
                      title=f"Paired AULC effect per world ({len(summary['worlds'])} worlds); ▲ better, ▼ worse, "
                            "● no detectable difference (Holm)")
    return fig


def regime_figure(summary: Mapping[str, Any], comparisons: Sequence[str] | None = None) -> Any:
    """Small multiples: one panel per world knob (columns) and comparison (rows), effect against the knob,
    a point per world; numeric knobs on their own axis, text knobs as categories."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    comps = list(comparisons or summary["comparisons"])
    knobs = [k for k in summary["knobs"]
             if any(summary["regime"].get(c, {}).get("knobs", {}).get(k, {}).get("kind") != "constant" for c in comps)]
    if not comps or not knobs:
        fig = go.Figure()
        fig.add_annotation(text="no world knob varies over these runs", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(template="plotly_white", height=240, xaxis_visible=False, yaxis_visible=False)
        return fig
    titles = []
    for c in comps:
        for k in knobs:
            s = summary["regime"][c]["knobs"].get(k, {})
            extra = f"<br>ρ {s['rho']:+.2f}" if s.get("kind") == "spearman" and s.get("rho") is not None else "<br> "
            titles.append(f"{k}{extra}")
    fig = make_subplots(rows=len(comps), cols=len(knobs), subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.025, vertical_spacing=0.16 if len(comps) < 4 else 0.08)
    by_world = {w["setting"]: w for w in summary["worlds"]}

    log_knobs = {k for k, rule in PRIOR.items() if str(rule.get("dist", "")).startswith("loguniform")}  # as sampled
    for i, c in enumerate(comps, start=1):
        y = summary["regime"][c]["y"]
        rows = [r for r in summary["table"] if r["comparison"] == c and r.get(y) is not None]
        for j, k in enumerate(knobs, start=1):
            xs = [by_world[r["setting"]]["knobs"].get(k) for r in rows]
            fig.add_trace(go.Scatter(
                x=[str(x) if isinstance(x, str) else x for x in xs], y=[r[y] * (100 if y == "effect_share" else 1) for r in rows],
                mode="markers", marker={"color": COMP_COLORS.get(c, "#2ca02c"), "size": 7,
                                        "symbol": [VERDICT_SYMBOLS.get(r.get("holm_verdict"), "circle") for r in rows]},
                showlegend=False, text=[f"{r['name']}: {_html(world_short(r['world'], 80))}" for r in rows], hovertemplate="%{text}<br>%{x}: %{y:.3g}<extra></extra>"),
                row=i, col=j)
            fig.add_hline(y=0, line={"color": "#9ca3af", "dash": "dot", "width": 1}, row=i, col=j)
            if k in log_knobs:
                fig.update_xaxes(type="log", dtick="D2", row=i, col=j)
            else:
                fig.update_xaxes(nticks=4, row=i, col=j)
        fig.update_yaxes(title_text=f"{_html(c)}<br>{'% of headroom' if y == 'effect_share' else 'effect'}", row=i, col=1)
    fig.update_annotations(font_size=11)
    fig.update_xaxes(tickfont_size=10, tickangle=0)
    fig.update_layout(template="plotly_white", height=max(340, 290 * len(comps)), margin={"l": 70, "r": 10, "t": 80, "b": 40},
                      title="Regime map: effect against each world knob (a point per world; ▲/▼ called by Holm)")
    return fig


def write_html(summary: Mapping[str, Any], path: str | Path) -> Path:
    """The distributions and the regime map as one standalone HTML file (plotly.js embedded; offline)."""
    path = Path(path)
    parts = [distribution_figure(summary).to_html(full_html=False, include_plotlyjs=True),
             regime_figure(summary).to_html(full_html=False, include_plotlyjs=False)]
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>balpm: results over worlds</title></head><body>"
            + "".join(parts) + "</body></html>")
    runs.atomic_write_text(path, html)
    return path
