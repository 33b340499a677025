"""Data preparation for the dashboard: pure functions of run tables (pandas in, pandas out).

No Streamlit here, so every function is testable on its own. The tables are those of
:mod:`balpm.experiment.runs` (rounds, acquisitions, pool, pool_scores, increments) and the dataset snapshot
(table, prompt ids, prompt features). Conventions: ``sign`` is +1 for ``U + beta*H`` and -1 for the
entropy-minimiser ablation ``U - beta*H``; H's two terms are ``log_dist`` and ``h - log_dist`` (the
count term with its sign, ``-digamma(n + 1) / d``), so ``U + sign*beta*(dist + count) = score``.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm.acquisition.balpm import replay_scores
from balpm.acquisition.balpm import term_shares as engine_term_shares
from balpm.engine import diagnostics
from balpm.engine.diagnostics import DIVERSITY_RATIO
from balpm.evidence import metrics

SCORE_CHOICES = ("final", "u", "beta_h")
SCORE_LABELS = {"final": "final score U ± β·H", "u": "uncertainty U", "beta_h": "β·H (entropy term)"}


# ---- runs ------------------------------------------------------------------------------------
def runs_frame(infos: Sequence[Any]) -> pd.DataFrame:
    """One display row per :class:`balpm.experiment.runs.RunInfo` (progress, hashes, problems)."""
    rows = []
    for i in infos:
        done = max(int(i.last_round) + 1, 0)
        total = int(i.rounds or 0)
        rows.append({
            "run": i.run_id, "state": i.state, "policy": i.label or i.policy or "?",
            "seed": i.seed, "rounds done": f"{done}/{total}" if total else "",
            "progress": (done / total) if total else 0.0,
            "data": i.data_hash or "", "features": (i.feature_hash or "")[:16], "config": (i.config_hash or "")[:8],
            "setting": i.setting or "", "updated": i.updated or "",
            "problem": i.reason or i.error or ("process gone: resume with balpm run --resume"
                                               if i.state == "running" and i.alive is False else ""),
        })
    cols = ["run", "state", "policy", "seed", "rounds done", "progress", "data", "features", "config",
            "setting", "updated", "problem"]
    return pd.DataFrame(rows, columns=cols)


def parse_seeds(text: str) -> list[int]:
    """``"0, 1, 5-7"`` -> ``[0, 1, 5, 6, 7]`` (ValueError naming the offending part otherwise)."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad seed {part!r}: use non-negative integers and ranges like 0,1,5-7")
        a, b = int(lo), int(hi) if hi else int(lo)
        if b < a or b - a > 1000:
            raise ValueError(f"bad seed range {part!r}")
        seeds.extend(range(a, b + 1))
    out = list(dict.fromkeys(seeds))
    if not out:
        raise ValueError("no seeds given")
    return out


# ---- the map ---------------------------------------------------------------------------------
def prompt_positions(prompt_ids: Sequence[str]) -> dict[str, int]:
    """prompt id -> row of the snapshot's prompt features."""
    return {str(p): i for i, p in enumerate(prompt_ids)}


def pool_coords(pool: pd.DataFrame, prompt_ids: Sequence[str], coords_P_2: np.ndarray) -> pd.DataFrame:
    """Every pool item at its prompt's 2-D position: pool_index, prompt_id, x, y (pool order)."""
    pos = prompt_positions(prompt_ids)
    rows = np.array([pos.get(str(p), -1) for p in pool["prompt_id"].to_numpy()], dtype=np.int64)
    if (rows < 0).any():
        missing = pool["prompt_id"].to_numpy()[rows < 0][0]
        raise KeyError(f"prompt {missing!r} of the pool is not in the dataset snapshot")
    xy = np.asarray(coords_P_2, dtype=np.float32)[rows]
    return pd.DataFrame({"pool_index": pool["pool_index"].to_numpy(np.int64),
                         "prompt_id": pool["prompt_id"].astype(str).to_numpy(),
                         "x": xy[:, 0], "y": xy[:, 1]})


def acquired_round(pool: pd.DataFrame, acq: pd.DataFrame, upto_round: int | None = None) -> np.ndarray:
    """Per pool item (pool order): -1 initial, r acquired in round r (<= upto_round), NaN never."""
    out = np.full(len(pool), np.nan)
    out[pool["initial"].to_numpy(bool)] = -1
    if len(acq):
        a = acq if upto_round is None else acq[acq["round"] <= upto_round]
        where = pd.Series(np.arange(len(pool)), index=pool["pool_index"].to_numpy(np.int64))
        out[where.loc[a["pool_index"].to_numpy(np.int64)].to_numpy()] = a["round"].to_numpy(float)
    return out


def map_frame(coords: pd.DataFrame, pool: pd.DataFrame, acq: pd.DataFrame, upto_round: int | None = None) -> pd.DataFrame:
    """``coords`` (from :func:`pool_coords`) plus ``round``: -1 initial, r acquired in round r, NaN unlabelled."""
    out = coords.copy()
    out["round"] = acquired_round(pool, acq, upto_round)
    return out


def axis_ranges(frames: Iterable[pd.DataFrame], pad: float = 0.04) -> tuple[list[float], list[float]]:
    """Shared x and y ranges of several maps (so side-by-side maps line up)."""
    xs = np.concatenate([f["x"].to_numpy(float) for f in frames if len(f)] or [np.zeros(1)])
    ys = np.concatenate([f["y"].to_numpy(float) for f in frames if len(f)] or [np.zeros(1)])
    def rng(v: np.ndarray) -> list[float]:
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        span = (hi - lo) or 1.0
        return [lo - pad * span, hi + pad * span]
    return rng(xs), rng(ys)


# ---- step-through replay -----------------------------------------------------------------------
def replay_counts(n0_N: np.ndarray, increments: pd.DataFrame | None, step: int) -> np.ndarray:
    """n(x) of each pool item after ``step`` picks: the engine's :func:`balpm.engine.entropy.replay_counts`.

    ``increments`` has columns ``step`` and ``index`` (positions into ``n0_N``).
    """
    from balpm.engine.entropy import replay_counts as engine_replay_counts

    n0 = np.asarray(n0_N)
    if increments is None or not len(increments):
        return n0.astype(np.float64, copy=True)
    return np.asarray(engine_replay_counts(n0, increments, int(step)), dtype=np.float64)


def increments_by_position(scores: pd.DataFrame, increments: pd.DataFrame | None) -> pd.DataFrame | None:
    """The run's increments (step, pool_index) as (step, index) positions into the ``scores`` rows."""
    if increments is None:
        return None
    where = pd.Series(np.arange(len(scores), dtype=np.int64), index=scores["pool_index"].to_numpy(np.int64))
    idx = where.reindex(increments["pool_index"].to_numpy(np.int64))
    keep = idx.notna().to_numpy()
    return pd.DataFrame({"step": increments["step"].to_numpy(np.int64)[keep],
                         "index": idx.to_numpy()[keep].astype(np.int64)}).sort_values("step", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Replay:
    """The pool as the greedy selection saw it just before pick ``step`` of one round.

    ``frame`` (scores' row order): pool_index, prompt_id, u, n, h, beta_h, final, status
    ("candidate", "picked" = taken at an earlier step, "current" = taken at this step) and ``raised``
    (this pick raises the item's count n(x): the pick lies inside the item's kNN radius).
    ``pick``: the acquisitions row of this step (a dict), ``exact``: True when H was replayed from the
    counts (pool-radius estimator), False when only the round's starting scores are known.
    """

    frame: pd.DataFrame
    pick: dict[str, Any]
    step: int
    n_steps: int
    exact: bool


def replay_step(scores: pd.DataFrame, increments: pd.DataFrame | None, picks: pd.DataFrame, step: int, *,
                beta: float, d: float, sign: float = 1.0, inc_pos: pd.DataFrame | None = None) -> Replay:
    """Recompute every pool item's score just before pick ``step`` (0-based) of a round.

    H at step s is ``log_dist - digamma(n_s + 1) / d`` with ``n_s = replay_counts(n0, increments, s)``;
    the final score is ``u + sign * beta * H``. ``picks`` are the round's acquisitions rows.
    Pass ``inc_pos`` (from :func:`increments_by_position`) to skip re-mapping the increments.
    """
    picks = picks.sort_values("step").reset_index(drop=True)
    n_steps = len(picks)
    if n_steps == 0:
        raise ValueError("this round has no picks to replay")
    step = int(min(max(step, 0), n_steps - 1))
    if inc_pos is None:
        inc_pos = increments_by_position(scores, increments)
    u = scores["u"].to_numpy(np.float64)
    u = np.where(np.isfinite(u), u, 0.0) if np.isfinite(u).any() else u
    log_dist = scores["log_dist"].to_numpy(np.float64)
    exact = (inc_pos is not None and np.isfinite(log_dist).all() and np.isfinite(u).all()
             and np.isfinite(scores["n0"].to_numpy(np.float64)).all())
    if exact:  # the engine's replay: the same arithmetic as greedy_select, bit for bit

        rs = replay_scores(u, log_dist, scores["n0"].to_numpy(np.float64), inc_pos, step, beta=float(beta),
                           d=float(d), minimize=sign < 0)
        n, h = rs.n_N.astype(np.float64), rs.h_N
    else:
        n = scores["n0"].to_numpy(np.float64)
        h = scores["h"].to_numpy(np.float64)
    beta_h = rs.beta_h_N if exact else float(beta) * h
    if exact:
        final = rs.score_N
    elif np.isfinite(h).any():
        final = u + sign * beta_h
    else:
        final = scores["score"].to_numpy(np.float64) if np.isfinite(scores["score"].to_numpy(np.float64)).any() else u
    status = np.full(len(scores), "candidate", dtype=object)
    where = pd.Series(np.arange(len(scores)), index=scores["pool_index"].to_numpy(np.int64))
    before = picks.loc[picks["step"] < step, "pool_index"].to_numpy(np.int64)
    status[where.reindex(before).dropna().to_numpy(np.int64)] = "picked"
    pick = picks.iloc[step].to_dict()
    cur = where.get(int(pick["pool_index"]))
    if cur is not None:
        status[int(cur)] = "current"
    raised = np.zeros(len(scores), dtype=bool)
    if inc_pos is not None and len(inc_pos):
        raised[inc_pos.loc[inc_pos["step"] == step, "index"].to_numpy(np.int64)] = True
    frame = pd.DataFrame({
        "pool_index": scores["pool_index"].to_numpy(np.int64), "prompt_id": scores["prompt_id"].astype(str).to_numpy(),
        "u": u, "n": n, "h": h, "beta_h": beta_h, "final": final, "status": status, "raised": raised,
    })
    dist = sign * float(beta) * log_dist if np.isfinite(log_dist).any() else np.zeros(len(scores))
    count = np.where(np.isfinite(h), sign * beta_h - np.nan_to_num(dist), 0.0)
    frame = pd.concat([frame, term_shares(u, dist, count)], axis=1)
    return Replay(frame=frame, pick=pick, step=step, n_steps=n_steps, exact=bool(exact))


def term_shares(u_N: np.ndarray, dist_N: np.ndarray, count_N: np.ndarray) -> pd.DataFrame:
    """Each part's share of ``|U| + |β·dist| + |β·count|`` (columns u_share, dist_share, count_share):
    the engine's :func:`balpm.acquisition.balpm.term_shares`."""
    return engine_term_shares(u_N, dist_N, count_N)


def fmt_num(x: Any, digits: int = 4) -> str:
    """A score for people: fixed point (``0.0123``) when readable, scientific (``3.1e-04``) when the
    value is tiny (``0 < |x| < 1e-3``) or large (``>= 1e4``); ``–`` for NaN / None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if not np.isfinite(v):
        return "–" if np.isnan(v) else ("∞" if v > 0 else "−∞")
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return f"{v:.{max(digits - 3, 1)}e}"
    return f"{v:.{digits}f}"


def fmt_share(x: Any) -> str:
    """A share in percent, readable when tiny (``0.04%``, ``<0.01%``); ``–`` for NaN."""
    try:
        v = float(x) * 100
    except (TypeError, ValueError):
        return "–"
    if not np.isfinite(v):
        return "–"
    if v == 0:
        return "0%"
    if v < 0.01:
        return "<0.01%"
    return f"{v:.2f}%" if v < 10 else f"{v:.1f}%"


def round_beta(rounds: pd.DataFrame | None, rnd: int, default: float) -> float:
    """The beta the selection of round ``rnd`` used: rounds.parquet ``beta_effective`` when recorded
    (``scaled`` mode sets it per round), else ``default`` (the config's beta)."""
    if rounds is not None and len(rounds) and "beta_effective" in rounds.columns:
        hit = rounds.loc[rounds["round"] == int(rnd), "beta_effective"]
        if len(hit) and np.isfinite(float(hit.iloc[0])):
            return float(hit.iloc[0])
    return float(default)


def round_spreads(rounds: pd.DataFrame | None, rnd: int, scores: pd.DataFrame | None = None,
                  beta: float = float("nan")) -> dict[str, float]:
    """The U and β·H spreads of round ``rnd`` (:mod:`balpm.engine.diagnostics` columns): as recorded in
    rounds.parquet, or, for runs written before they were recorded, computed from the round's pool
    scores (``u``, ``h``) with ``beta``. All NaN when neither is available."""

    if rounds is not None and len(rounds) and "u_std" in rounds.columns:
        hit = rounds[rounds["round"] == int(rnd)]
        if len(hit) and np.isfinite(float(hit["u_std"].iloc[0])):
            return {c: float(hit[c].iloc[0]) if c in hit.columns else float("nan")
                    for c in diagnostics.ROUND_DIAGNOSTIC_COLUMNS}
    if scores is not None and len(scores) and "u" in scores.columns:
        u = scores["u"].to_numpy(np.float64)
        h = scores["h"].to_numpy(np.float64) if "h" in scores.columns else None
        if h is not None and np.isfinite(h).any() and np.isfinite(beta):
            return diagnostics.score_diagnostics(u, h, beta, scores["score"].to_numpy(np.float64)
                                                 if "score" in scores.columns else None)
        return diagnostics.score_diagnostics(u)
    return diagnostics.empty_diagnostics()


DIVERSITY_MESSAGE = "this round BAL-PM acts as a prompt-diversity sampler"


def diversity_message(spreads: dict[str, float]) -> str | None:
    """The plain warning when U's spread over the pool is below a tenth of β·H's (std based), with
    the numbers; None when U can compete (or nothing is recorded)."""

    ratio = spreads.get("beta_h_to_u_std", float("nan"))
    if not (ratio == ratio) or ratio <= DIVERSITY_RATIO:
        return None
    iqr = spreads.get("beta_h_to_u_iqr", float("nan"))
    rho = spreads.get("score_h_spearman", float("nan"))
    times = "∞" if not np.isfinite(ratio) else f"{ratio:.0f}×"
    return (f"{DIVERSITY_MESSAGE}: over the pool, the spread of β·H is {times} that of U "
            f"(std {fmt_num(spreads.get('beta_h_std'))} vs {fmt_num(spreads.get('u_std'))}; IQR ratio "
            f"{fmt_num(iqr, 2) if np.isfinite(iqr) else '∞'}), and the score ranks the pool like H "
            f"(Spearman {fmt_num(rho, 3)}). U only breaks near-ties of H; beta_mode=scaled or a smaller β "
            "gives it a say.")


def last_acquiring_round(last_round: int, rounds: int) -> int:
    """The last round that acquired a batch so far: the final round of a run never acquires."""
    return int(max(min(int(last_round), int(rounds) - 2), 0))


def projection_ranges(coords: Iterable[np.ndarray], pad: float = 0.04) -> tuple[list[float], list[float]]:
    """One x and y range for every map of the given projections (``coords_P_2`` arrays), so the side
    maps and the replay share axes."""
    return axis_ranges([pd.DataFrame({"x": np.asarray(c)[:, 0], "y": np.asarray(c)[:, 1]}) for c in coords], pad)


def play_clock() -> float:
    """The clock the replay's play button follows (``time.monotonic``; tests replace it)."""
    return time.monotonic()


def play_position(start_step: int, started: float, now: float, rate: float, n_steps: int) -> int:
    """The pick a player started at ``start_step`` at time ``started`` shows at ``now``: one pick per
    ``1 / rate`` seconds of wall time (the first tick shows the next pick), whatever each redraw costs;
    clamped to ``1 .. n_steps``."""
    pos = int(start_step) + 1 + int(max(now - started, 0.0) * float(rate))
    return int(min(max(pos, 1), int(n_steps)))


def score_sign(minimize_entropy: bool) -> float:
    """+1 for U + beta*H, -1 for the entropy-minimiser ablation U - beta*H."""
    return -1.0 if minimize_entropy else 1.0


# ---- anatomy of a batch ----------------------------------------------------------------------
def anatomy_frame(picks: pd.DataFrame, *, beta: float, sign: float = 1.0) -> pd.DataFrame:
    """One row per pick: u, dist (sign*beta*log_dist), count (sign*beta*(h - log_dist)), score, and
    each part's share of ``|u| + |dist| + |count|`` (u_share, dist_share, count_share). ``beta`` is the
    round's effective beta (:func:`round_beta`).

    For policies without an entropy term the two H parts are 0 and ``score`` is what was maximised.
    """
    p = picks.sort_values("step").reset_index(drop=True)
    u = p["u"].to_numpy(np.float64)
    log_dist = p["log_dist"].to_numpy(np.float64)
    h = p["h"].to_numpy(np.float64)
    dist = np.where(np.isfinite(log_dist), sign * beta * log_dist, 0.0)
    count = np.where(np.isfinite(h) & np.isfinite(log_dist), sign * beta * (h - log_dist),
                     np.where(np.isfinite(h), sign * beta * h - dist, 0.0))
    score = p["score"].to_numpy(np.float64)
    out = pd.DataFrame({"pick": p["step"].to_numpy(np.int64) + 1, "pool_index": p["pool_index"].to_numpy(np.int64),
                        "prompt_id": p["prompt_id"].astype(str).to_numpy(), "u": u, "dist": dist, "count": count,
                        "beta_h": dist + count, "score": score, "n": p["n"].to_numpy(np.float64)})
    return pd.concat([out, term_shares(u, dist, count)], axis=1)


def ratio_by_round(acq: pd.DataFrame) -> pd.DataFrame:
    """Median and max of the uncertainty-score ratio U/score per round (as the paper plots it)."""
    if not len(acq):
        return pd.DataFrame(columns=["round", "median", "max"])
    ratio = acq["ratio"].to_numpy(np.float64)
    if not np.isfinite(ratio).any():
        score = acq["score"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = acq["u"].to_numpy(np.float64) / score
    df = pd.DataFrame({"round": acq["round"].to_numpy(np.int64), "ratio": ratio})
    df = df[np.isfinite(df["ratio"])]
    g = df.groupby("round")["ratio"]
    return pd.DataFrame({"median": g.median(), "max": g.max()}).reset_index()


def u_share_by_round(acq: pd.DataFrame) -> pd.DataFrame:
    """Median and max per round of U's share of each pick's score, |U| / (|U| + |beta*H|): in [0, 1] (1: the
    uncertainty alone decided, 0: the entropy term alone), where U / score explodes as a score nears 0."""
    if not len(acq) or "beta_h" not in acq.columns:
        return pd.DataFrame(columns=["round", "median", "max"])
    u, bh = np.abs(acq["u"].to_numpy(np.float64)), np.abs(acq["beta_h"].to_numpy(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = u / (u + bh)
    df = pd.DataFrame({"round": acq["round"].to_numpy(np.int64), "share": share})
    df = df[np.isfinite(df["share"])]
    g = df.groupby("round")["share"]
    return pd.DataFrame({"median": g.median(), "max": g.max()}).reset_index()


def mean_pairwise_distance(feats_B_D: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of rows (duplicates count as distance 0)."""
    x = np.asarray(feats_B_D, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(d2[iu]).mean())


def redundancy_frame(acq: pd.DataFrame, prompt_ids: Sequence[str] | None = None,
                     feats_P_D: np.ndarray | None = None) -> pd.DataFrame:
    """Per round: picks, unique prompts, comparisons per prompt, mean pairwise distance of the batch's
    prompt features, and the cumulative unique prompts / comparisons per prompt over all acquisitions."""
    cols = ["round", "picks", "unique_prompts", "comparisons_per_prompt", "mean_pairwise_distance",
            "cumulative_unique_prompts", "cumulative_comparisons_per_prompt"]
    if not len(acq):
        return pd.DataFrame(columns=cols)
    pos = prompt_positions(prompt_ids) if prompt_ids is not None else None
    seen: set[str] = set()
    total = 0
    rows = []
    for r, g in acq.sort_values(["round", "step"]).groupby("round", sort=True):
        prompts = g["prompt_id"].astype(str).to_numpy()
        uniq = set(prompts)
        seen |= uniq
        total += len(g)
        dist = float("nan")
        if pos is not None and feats_P_D is not None:
            idx = [pos[p] for p in prompts if p in pos]
            dist = mean_pairwise_distance(np.asarray(feats_P_D)[idx])
        rows.append({"round": int(r), "picks": len(g), "unique_prompts": len(uniq),
                     "comparisons_per_prompt": len(g) / max(len(uniq), 1), "mean_pairwise_distance": dist,
                     "cumulative_unique_prompts": len(seen), "cumulative_comparisons_per_prompt": total / max(len(seen), 1)})
    return pd.DataFrame(rows, columns=cols)


# ---- learning curves -------------------------------------------------------------------------
METRICS: dict[str, str] = dict(metrics.METRIC_LABELS)  # quality metric column -> label (balpm.evidence.metrics.METRIC_SPECS)


def curve_runs(infos: Sequence[Any], rounds_of: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The runs with at least one round as :class:`balpm.evidence.report.LoadedRun` (``rounds_of(info)`` reads a rounds table or
    returns None), one per (setting, label, seed) exactly as ``balpm report`` counts them; and the duplicates."""
    from balpm.evidence import stats
    from balpm.evidence.report import LoadedRun

    out = []
    for info in infos:
        rd = rounds_of(info)
        if rd is not None and len(rd):
            out.append(LoadedRun(str(info.run_id), Path(info.path), str(info.label or info.policy or info.run_id),
                                 str(info.policy or "?"), int(info.seed or 0), str(info.setting or "?"), rd))
    kept, dups = stats.dedupe(out)
    return sorted(kept, key=lambda r: (r.label, r.seed)), dups


def page_evidence(runs: Sequence[Any], baseline: str) -> dict[str, Any]:
    """:func:`balpm.evidence.stats.evidence` with the defaults ``balpm report`` uses (so both show the same numbers)."""
    from balpm.evidence import stats

    return stats.evidence(runs, baseline=baseline)


VERDICT_COLUMNS = ("setting", "metric", "policy", "seeds", "paired", "final mean", "final SEM", "AULC",
                   "AULC diff", "AULC CI low", "AULC CI high", "AULC boot low", "AULC boot high", "final diff",
                   "final CI low", "final CI high", "verdict", "final verdict", "fewer labels (exact)",
                   "fewer labels (paper)")


def verdict_frame(ev: dict[str, Any], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (setting, metric, policy) of an :func:`page_evidence` result: the numbers of
    ``balpm report --json`` (``vs_baseline``), NaN where there are none; the baseline's row has no diff."""
    from balpm.evidence import stats

    rows = []
    for e in ev["policies"]:
        for m in (metrics or list(e["final"])):
            if m == "labelled" or m not in e["final"]:
                continue
            vs = (e.get("vs_baseline") or {}).get(m) or {}
            a, f = vs.get("aulc_diff") or {}, vs.get("final_diff") or {}
            aci, abt, fci = a.get("ci") or [None, None], a.get("boot_ci") or [None, None], f.get("ci") or [None, None]
            fl = vs.get("fewer_labels")
            rows.append({
                "setting": e["setting"], "metric": m, "policy": e["label"], "seeds": e["n_seeds"],
                "paired": vs.get("paired") if vs else None,
                "final mean": _f(e["final"][m].get("mean")), "final SEM": _f(e["final"][m].get("sem")),
                "AULC": _f((e["aulc"].get(m) or {}).get("mean")),
                "AULC diff": _f(a.get("mean")), "AULC CI low": _f(aci[0]), "AULC CI high": _f(aci[1]),
                "AULC boot low": _f(abt[0]), "AULC boot high": _f(abt[1]),
                "final diff": _f(f.get("mean")), "final CI low": _f(fci[0]), "final CI high": _f(fci[1]),
                "verdict": "(baseline)" if e["is_baseline"] else vs.get("verdict", "-"),
                "final verdict": "" if e["is_baseline"] else vs.get("final_verdict", "-"),
                "fewer labels (exact)": stats.fmt_saving(fl, "exact"), "fewer labels (paper)": stats.fmt_saving(fl, "paper"),
            })
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


def verdict_display(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`verdict_frame` as text for the page, grouped by metric (baseline first), the verdict next to
    the policy so it is never scrolled out of view: ``+d [lo, hi]``, ``mean ± SEM``, ``-`` for a missing
    number, ``1 seed: no CI`` (never NaN, None or infinity)."""
    from balpm.evidence import stats

    order = {m: i for i, m in enumerate(dict.fromkeys(df["metric"]))}
    df = df.assign(_m=df["metric"].map(order), _b=df["verdict"] != "(baseline)").sort_values(["_m", "_b"], kind="stable")
    rows = []
    for _, r in df.iterrows():
        dg = 3 if str(r["metric"]).endswith("accuracy") else 4
        base = r["verdict"] == "(baseline)"
        n = None if base else int(r["seeds"])
        rows.append({
            "metric": METRICS.get(r["metric"], r["metric"]),
            "policy": r["policy"],
            "verdict (AULC)": r["verdict"] + ("" if base or r["paired"] is not False else " (unpaired)"),
            "AULC diff [95% t CI]": "" if base else (
                f"{stats.fmt_value(r['AULC diff'], dg, True)} "
                f"{stats.fmt_interval([r['AULC CI low'], r['AULC CI high']], dg, n)}"),
            "final diff [95% t CI]": "" if base else (
                f"{stats.fmt_value(r['final diff'], dg, True)} "
                f"{stats.fmt_interval([r['final CI low'], r['final CI high']], dg, n)}"),
            "final verdict": r["final verdict"],
            "seeds": int(r["seeds"]),
            "final (mean ± SEM)": stats.fmt_value(r["final mean"], dg) + (
                "" if not np.isfinite(r["final SEM"]) else f" ± {r['final SEM']:.{dg}f}"),
            "AULC bootstrap CI": "" if base else stats.fmt_interval([r["AULC boot low"], r["AULC boot high"]], dg, n),
            "fewer labels (exact / paper)": "" if base else (
                "-" if r["fewer labels (exact)"] == "-" else f"{r['fewer labels (exact)']} / {r['fewer labels (paper)']}"),
        })
    return pd.DataFrame(rows)


VERDICT_COLORS = {"better": "#15803d", "worse": "#b91c1c", "no detectable difference": "#4b5563"}
SHOWN_VERDICTS = ("verdict (AULC)", "final verdict")  # the verdict columns of verdict_display


def verdict_css(value: Any) -> str:
    """CSS of a verdict cell: green ``better``, red ``worse``, grey ``no detectable difference``; bold."""
    v = str(value).split(" (")[0]
    color = VERDICT_COLORS.get(v)
    return f"color: {color}; font-weight: 600" if color else ""


def verdict_styled(df: pd.DataFrame) -> Any:
    """``df`` (:func:`verdict_display`) as a pandas Styler with its verdict columns coloured by :func:`verdict_css`."""
    cols = [c for c in SHOWN_VERDICTS if c in df.columns]
    return df.style.map(verdict_css, subset=cols)


def ceiling_lines(ev: dict[str, Any], metrics: Sequence[str], setting: str | None = None) -> dict[str, dict[str, Any]]:
    """metric -> ``{y, text, headroom, warning}`` of the ceiling (``full`` runs' mean) to draw as a line
    (``setting``: only that setting's ceiling; default: any)."""
    from balpm.evidence import stats

    out: dict[str, dict[str, Any]] = {}
    for key, ceil in (ev.get("ceiling") or {}).items():
        if not ceil or (setting is not None and key != setting):
            continue
        for m in metrics:
            c = ceil["metrics"].get(m)
            if c and c.get("mean") is not None:
                out[m] = {"y": c["mean"], "headroom": c.get("headroom"), "warning": c.get("warning"),
                          "text": f"ceiling (whole pool, {ceil['n_seeds']} seed{'s' * (ceil['n_seeds'] != 1)}): "
                                  f"{stats.fmt_value(c['mean'])}, headroom {stats.fmt_value(c.get('headroom'), 4, True)}"}
    return out


def curve_table(curves: Sequence[tuple[str, int, pd.DataFrame]], metric: str) -> pd.DataFrame:
    """Long table of one metric: label, seed, round, labelled, value (NaN rows dropped)."""
    parts = []
    for label, seed, rounds in curves:
        if metric not in rounds.columns or not len(rounds):
            continue
        parts.append(pd.DataFrame({"label": label, "seed": seed, "round": rounds["round"].to_numpy(np.int64),
                                   "labelled": rounds["labelled"].to_numpy(np.int64),
                                   "value": rounds[metric].to_numpy(np.float64)}))
    if not parts:
        return pd.DataFrame(columns=["label", "seed", "round", "labelled", "value"])
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["value"])].reset_index(drop=True)


def curve_stats(curves: Sequence[tuple[str, int, pd.DataFrame]], metric: str, smooth: int = 1) -> pd.DataFrame:
    """Mean +/- SEM over seeds per label and labelled-set size, after an optional trailing moving
    average of ``smooth`` rounds on each seed's curve (the paper uses 3). Uses :mod:`balpm.evidence.metrics`."""

    long = curve_table(curves, metric)
    out = []
    for label, g in long.groupby("label", sort=False):
        mats, xs = seed_matrix(g, smooth)
        if mats is None:
            continue
        mean, sem = metrics.mean_sem(mats)
        out.append(pd.DataFrame({"label": label, "labelled": xs, "mean": np.asarray(mean, float),
                                 "sem": np.nan_to_num(np.asarray(sem, float)), "seeds": mats.shape[0]}))
    if not out:
        return pd.DataFrame(columns=["label", "labelled", "mean", "sem", "seeds"])
    return pd.concat(out, ignore_index=True)


def seed_matrix(g: pd.DataFrame, smooth: int = 1) -> tuple[np.ndarray | None, np.ndarray]:
    """Seeds x labelled-sizes matrix of one label's curves (sizes every seed has), smoothed per seed."""

    sizes = None
    for _, s in g.groupby("seed"):
        cur = set(s["labelled"].tolist())
        sizes = cur if sizes is None else sizes & cur
    if not sizes:
        return None, np.array([], dtype=np.int64)
    xs = np.array(sorted(sizes), dtype=np.int64)
    rows = []
    for _, s in g.groupby("seed"):
        y = s.drop_duplicates("labelled").set_index("labelled")["value"].reindex(xs).to_numpy(np.float64)
        if smooth and smooth > 1:
            y = np.asarray(metrics.smooth(y, smooth), dtype=np.float64)
        rows.append(y)
    return np.vstack(rows), xs


# ---- ablations -------------------------------------------------------------------------------
def picks_diff(base: pd.DataFrame, variant: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which prompts the variant acquired that the base did not ("entered") and the reverse ("left").

    Returns (per-round summary: round, entered, left, shared — counted on prompts first acquired in
    that round — and a detail table: prompt_id, change, base_round, variant_round).
    """
    def first_round(a: pd.DataFrame) -> pd.Series:
        if not len(a):
            return pd.Series(dtype="float64")
        return a.groupby(a["prompt_id"].astype(str))["round"].min()

    b, v = first_round(base), first_round(variant)
    prompts = sorted(set(b.index) | set(v.index))
    detail = pd.DataFrame({"prompt_id": prompts})
    detail["base_round"] = b.reindex(prompts).to_numpy()
    detail["variant_round"] = v.reindex(prompts).to_numpy()
    detail["change"] = np.where(detail["base_round"].isna(), "entered",
                                np.where(detail["variant_round"].isna(), "left", "shared"))
    detail = detail[["prompt_id", "change", "base_round", "variant_round"]]
    rounds = sorted(set(base["round"].astype(int)) | set(variant["round"].astype(int))) if len(base) or len(variant) else []
    summary = []
    for r in rounds:
        summary.append({
            "round": r,
            "entered": int(((detail["change"] == "entered") & (detail["variant_round"] == r)).sum()),
            "left": int(((detail["change"] == "left") & (detail["base_round"] == r)).sum()),
            "shared": int(((detail["change"] == "shared") & (detail["variant_round"] == r)).sum()),
        })
    return pd.DataFrame(summary, columns=["round", "entered", "left", "shared"]), detail.reset_index(drop=True)


# ---- inspect ---------------------------------------------------------------------------------
def inspect_rows(pool_indices: Iterable[int], pool: pd.DataFrame, table: pd.DataFrame, acq: pd.DataFrame,
                 scores_by_round: dict[int, pd.DataFrame], *, beta: float = float("nan")) -> pd.DataFrame:
    """The full story of the chosen pool items: texts, human label, member probabilities, U, H and
    its terms, and the round and step each was picked (scores from the round it was picked in, or the
    last saved round for items never picked; NaN for the initial set, which was never scored)."""
    want = [int(i) for i in dict.fromkeys(int(i) for i in pool_indices)]
    p = pool.set_index("pool_index").reindex(want)
    texts = table.drop_duplicates("pair_id").set_index("pair_id")
    a = acq.set_index("pool_index") if len(acq) else pd.DataFrame()
    last = max(scores_by_round) if scores_by_round else None
    from balpm.evidence.lesson import cluster_name, region_names

    regions = region_names(texts) if "cluster" in texts.columns else {}  # "chit-chat", not 0.0000
    rows = []
    for idx in want:
        pair_id = str(p.at[idx, "pair_id"]) if idx in p.index and pd.notna(p.at[idx, "pair_id"]) else None
        row: dict[str, Any] = {"pool_index": idx, "pair_id": pair_id,
                               "prompt_id": str(p.at[idx, "prompt_id"]) if pair_id else None}
        if pair_id is not None and pair_id in texts.index:
            t = texts.loc[pair_id]
            row.update(prompt=t.get("prompt"), chosen=t.get("chosen"), rejected=t.get("rejected"),
                       human_label="chosen (the human's choice)")
            if "cluster" in texts.columns:
                c = t.get("cluster")
                try:
                    whole = float(c) == int(float(c))
                except (TypeError, ValueError, OverflowError):
                    whole = False
                row["cluster"] = regions.get(int(float(c)), cluster_name(c)) if whole else cluster_name(c)
        initial = bool(p.at[idx, "initial"]) if pair_id else False
        row["initial"] = initial
        picked = idx in a.index if len(a) else False
        row["round_picked"] = int(a.at[idx, "round"]) if picked else (-1 if initial else None)
        row["step_picked"] = int(a.at[idx, "step"]) if picked else None  # acquisitions.parquet's, from 0
        row["pick_in_batch"] = int(a.at[idx, "step"]) + 1 if picked else None  # the replay's "pick k/B", from 1
        src = row["round_picked"] if picked else (None if initial else last)
        sc = scores_by_round.get(src) if src is not None else None
        hit = sc[sc["pool_index"] == idx] if sc is not None else None
        if hit is not None and len(hit):
            s = hit.iloc[0]
            probs = [float(s[c]) for c in sorted((c for c in sc.columns if c[:1] == "p" and c[1:].isdigit()),
                                                   key=lambda c: int(c[1:]))]
            for k, pk in enumerate(probs):
                row[f"p{k}"] = pk
            row["p_mean"] = float(np.mean(probs)) if probs else float("nan")
            row["scores_from_round"] = int(src)
            for col in ("u", "radius", "n0", "log_dist", "count_term", "h", "score"):
                row[col] = float(s[col]) if col in s.index else float("nan")
        if picked:  # the components at the moment of the pick (n after the earlier picks of the batch)
            for col in ("score", "u", "log_dist", "count_term", "h", "beta_h", "ratio", "n"):
                row[f"{col}_at_pick"] = float(a.at[idx, col])
        rows.append(row)
    out = pd.DataFrame(rows)
    if np.isfinite(beta) and "h" in out.columns:
        out["beta_h"] = beta * out["h"]
    return out
