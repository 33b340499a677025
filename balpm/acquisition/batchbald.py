"""BatchBALD: the batch of greatest joint mutual information with the model (Kirsch et al. 2019).

For a batch x_1..x_b with binary labels y_j and ensemble members k = 1..K (equal weights),

    a(x_1..x_b) = H[y_1, .., y_b] - sum_j (1/K) sum_k H[p_k(x_j)]

with the joint ``p(y_1..y_b) = (1/K) sum_k prod_j p_k(y_j)``. Greedy: each step adds the pool item of
largest gain ``a(batch + x) - a(batch)``; the first step is BALD's top item.

The joint entropy of the picks with each candidate is computed **exactly** over the 2^t label
configurations of the t picks while ``2^t <= num_samples`` (the criterion of ``batchbald-redux``), and
from ``num_samples`` **sampled** configurations beyond: each sample draws a member k uniformly and
labels y_j ~ Bernoulli(p_k(x_j)) per pick (a draw from the joint, extended by one label per pick), and

    H[c, y] ~= -(1/M) sum_m sum_y p(c_m, y) / p(c_m) log p(c_m, y)

(importance weights of the sampled configurations c_m). Every draw comes from the ``rng`` passed in.
Arithmetic in float64; candidates are scored in row blocks so memory stays O(configurations x block).

**Lazy evaluation** (Minoux's lazy greedy): a candidate's gain can only shrink as the batch grows
(the joint mutual information is submodular; the first gain is BALD), so each candidate keeps its last
computed gain as an upper bound and a step computes gains only for the candidates of largest bound,
``EVAL_BLOCK`` at a time, until the best gain computed is above every remaining bound. With the exact
joint this gives the picks of full evaluation (the tests compare with ``batchbald-redux``). The first
sampled step evaluates every candidate; later sampled steps use the previous *estimates* (the same
sampled configurations, extended) as bounds, which hold for the true gains but only approximately for
the estimates, so their picks can differ from full evaluation where estimates are within sampling
noise of each other. The steps table records how many candidates each step evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.engine.uncertainty import bald, binary_entropy, check_probs
from balpm.errors import ConfigError
from balpm.knobs import knob

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd

STEP_COLUMNS = ("step", "index", "score", "u", "joint_mi", "joint_entropy", "exact", "evaluated")
BLOCK_ELEMENTS = 1 << 22  # configurations x candidates per block (32 MiB of float64 per matrix)
EVAL_BLOCK = 1024         # candidates whose gain a lazy step computes at a time
TINY = np.finfo(np.float64).tiny


def _plogp(p: np.ndarray) -> np.ndarray:
    """p log p elementwise, 0 at p = 0 (p >= 0); plain log of a floor, faster than xlogy."""
    return p * np.log(np.maximum(p, TINY))


def member_configurations(probs_T_K: np.ndarray) -> np.ndarray:
    """``P[c, k] = prod_j p_k(y_j = c_j)`` for all 2^T label configurations c of T items (exact joint).

    Row c's bits (most significant first) are the labels of items 0..T-1 (1: first answer preferred).
    """
    probs = np.asarray(probs_T_K, dtype=np.float64)
    joint = np.ones((1, probs.shape[1]), dtype=np.float64)
    for p_K in probs:  # T <= log2(num_samples) items: a short loop over picks, vectorised over configurations
        joint = np.stack([joint * (1.0 - p_K), joint * p_K], axis=1).reshape(-1, probs.shape[1])
    return joint


def joint_entropy(config_C_K: np.ndarray, weights_C: np.ndarray | None = None) -> float:
    """H of the configurations' joint ``p(c) = mean_k P[c, k]``: exact (``weights_C`` None) or the
    sampled estimate ``-(1/M) sum_m log p(c_m)`` (``weights_C`` = 1/M per sample)."""
    # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
    from scipy.special import xlogy
    p_C = config_C_K.mean(axis=1)
    if weights_C is None:
        return float(-xlogy(p_C, p_C).sum())
    return float(-(weights_C * np.log(p_C)).sum())


def candidate_joint_entropies(config_C_K: np.ndarray, probs_N_K: np.ndarray,
                              weights_C: np.ndarray | None = None) -> np.ndarray:
    """H[c, y_x] for every candidate x: configurations ``c`` of the picks (``config_C_K``) joined with
    the candidate's label. Exact sum over configurations, or the importance-weighted sampled estimate
    when ``weights_C`` (1/M per sampled configuration) is given. Vectorised in row blocks."""
    n, k = probs_N_K.shape
    c = config_C_K.shape[0]
    out = np.empty(n, dtype=np.float64)
    p_C = config_C_K.mean(axis=1)
    scale = (weights_C / p_C)[:, None] if weights_C is not None else None
    block = max(1, BLOCK_ELEMENTS // max(c, 1))
    for i in range(0, n, block):
        p1_C_b = config_C_K @ probs_N_K[i:i + block].T / k      # p(c, y=1)
        p0_C_b = p_C[:, None] - p1_C_b                           # p(c, y=0)
        np.maximum(p0_C_b, 0.0, out=p0_C_b)                      # rounding below 0 -> 0
        nats = _plogp(p1_C_b)
        nats += _plogp(p0_C_b)
        if scale is not None:
            nats *= scale
        out[i:i + block] = -nats.sum(axis=0)
    return out


def sample_configurations(probs_T_K: np.ndarray, num_samples: int, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``num_samples`` draws from the joint of T items: a member per sample (uniform), then each label
    from that member. Returns (member_M, labels_M_T)."""
    probs = np.asarray(probs_T_K, dtype=np.float64)
    member_M = rng.integers(0, probs.shape[1], size=num_samples)
    labels_M_T = rng.random((num_samples, probs.shape[0])) < probs[:, member_M].T
    return member_M, labels_M_T


def sampled_configurations(probs_T_K: np.ndarray, labels_M_T: np.ndarray) -> np.ndarray:
    """``P[m, k] = prod_j p_k(y_j = labels[m, j])`` of sampled configurations (log-space product)."""
    probs = np.asarray(probs_T_K, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log1, log0 = np.log(probs), np.log1p(-probs)
    lab = labels_M_T.astype(np.float64)
    return np.exp(lab @ log1 + (1.0 - lab) @ log0)


def extend_sampled(config_M_K: np.ndarray, member_M: np.ndarray, p_K: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Add one item to sampled configurations: each sample's label from its own member, and the
    per-member product multiplied by that label's probability."""
    y_M = rng.random(member_M.size) < p_K[member_M]
    return config_M_K * np.where(y_M[:, None], p_K[None, :], 1.0 - p_K[None, :])


def select_batchbald(probs_N_K: np.ndarray, batch_size: int, rng: np.random.Generator,
                     num_samples: int = 1000) -> Selection:
    """Greedy BatchBALD batch from member probabilities ``probs_N_K`` (see module docstring).

    Steps table: ``score`` = the step's marginal gain, ``u`` = BALD of the pick, ``joint_mi`` = a() of
    the batch so far, ``joint_entropy`` = H of the picks' labels, ``exact`` = 1 where the joint was
    exact at that step (0: sampled).
    """
    # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd
    if int(num_samples) != num_samples or num_samples < 2:
        raise ConfigError(f"num_samples must be an integer >= 2 (got {num_samples})")
    probs = check_probs(probs_N_K)
    n = probs.shape[0]
    check_batch(batch_size, n)
    cond_N = binary_entropy(probs).mean(axis=1)
    bald_N = binary_entropy(probs.mean(axis=1)) - cond_N
    alive = np.ones(n, dtype=bool)
    config = np.ones((1, probs.shape[1]), dtype=np.float64)  # the empty batch: one configuration
    weights: np.ndarray | None = None
    member_M: np.ndarray | None = None
    h_batch, cond_batch = 0.0, 0.0
    picks: list[int] = []
    rows: dict[str, list] = {c: [] for c in STEP_COLUMNS}
    bound = bald_N.copy()  # each candidate's last computed gain: an upper bound on its gain now
    for step in range(batch_size):
        gain, evaluated = _lazy_gains(config, probs, weights, h_batch, cond_N, bound, alive)
        j = int(np.argmax(gain))  # first maximum among the evaluated: ties to the lowest pool position
        exact = weights is None
        picks.append(j)
        alive[j] = False
        cond_batch += cond_N[j]
        # the picks' configurations with j added
        if exact and 2 ** len(picks) <= num_samples:
            config = np.stack([config * (1.0 - probs[j]), config * probs[j]], axis=1).reshape(-1, probs.shape[1])
        elif exact:  # switch to sampled configurations of all picks so far
            member_M, labels = sample_configurations(probs[picks], num_samples, rng)
            config = sampled_configurations(probs[picks], labels)
            weights = np.full(num_samples, 1.0 / num_samples)
            bound[:] = np.inf  # exact gains do not bound sampled estimates: evaluate every candidate once
        else:
            config = extend_sampled(config, member_M, probs[j], rng)
        h_batch = joint_entropy(config, weights)
        for name, value in (("step", step), ("index", j), ("score", float(gain[j])), ("u", float(bald_N[j])),
                            ("joint_mi", h_batch - cond_batch), ("joint_entropy", h_batch), ("exact", float(exact)),
                            ("evaluated", evaluated)):
            rows[name].append(value)
    steps = pd.DataFrame(rows)
    steps["step"] = steps["step"].astype(np.int64)
    steps["index"] = steps["index"].astype(np.int64)
    steps["evaluated"] = steps["evaluated"].astype(np.int64)
    return Selection(indices=np.asarray(picks, dtype=np.int64), steps=steps)


def _lazy_gains(config_C_K: np.ndarray, probs_N_K: np.ndarray, weights_C: np.ndarray | None, h_batch: float,
                cond_N: np.ndarray, bound_N: np.ndarray, alive_N: np.ndarray) -> tuple[np.ndarray, int]:
    """This step's gains (-inf where not computed) and how many were computed; updates ``bound_N``.

    Candidates are taken in blocks of largest bound until the best computed gain exceeds every
    bound left (a candidate whose bound ties the best is still computed, so ties resolve as in full
    evaluation).
    """
    gain = np.full(alive_N.size, -np.inf)
    pending = alive_N.copy()
    best, evaluated = -np.inf, 0
    while True:
        left = np.where(pending, bound_N, -np.inf)
        n_left = int(pending.sum())
        if n_left == 0:
            break
        m = min(EVAL_BLOCK, n_left)
        top = np.argpartition(-left, m - 1)[:m]
        top = np.sort(top[pending[top]])
        if left[top].max() < best:
            break
        g = candidate_joint_entropies(config_C_K, probs_N_K[top], weights_C) - h_batch - cond_N[top]
        gain[top] = g
        bound_N[top] = g
        pending[top] = False
        evaluated += top.size
        best = max(best, float(g.max()))
    return gain, evaluated


class BatchBALDPolicy:
    """BatchBALD as a :class:`~balpm.acquisition.base.Policy` (:func:`select_batchbald`).

    ``num_samples``: sampled label configurations once 2^picks exceeds it (exact below). ``rng`` is used
    only for the sampled configurations. The ``uncertainty`` knob is accepted for a common signature but
    the score is BatchBALD's own (``u`` records the configured uncertainty of each pick).
    """

    def __init__(self, num_samples: int = 1000, uncertainty: str = "epistemic", name: str = "batchbald") -> None:
        if int(num_samples) != num_samples or num_samples < 2:
            raise ConfigError(f"num_samples must be an integer >= 2 (got {num_samples})")
        self.name = name
        self.num_samples = int(num_samples)
        self.uncertainty = uncertainty

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Greedy joint-MI batch; ``u`` of the steps table is the configured uncertainty."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        sel = select_batchbald(state.probs_N_K, batch_size, rng, self.num_samples)
        sel.steps["u"] = u[sel.indices]
        return sel

    def pool_table(self, state: PoolState) -> pd.DataFrame:
        """Per pool item: ``u`` and ``score`` = its gain at the first step (BALD, the empty batch's gain)."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd


        return pd.DataFrame({"u": state_uncertainty(state, self.uncertainty), "score": bald(state.probs_N_K)})


@dataclass(frozen=True)
class BatchBALDKnobs:
    """BatchBALD's knobs (docs/policies.md)."""

    num_samples: int = knob(1000, "BatchBALD: label configurations sampled once 2^picks exceeds it (the joint is "
                                  "exact below)", ge=2)


register_policy("batchbald", knobs=BatchBALDKnobs,
                build=lambda knobs, common: BatchBALDPolicy(num_samples=knobs.num_samples,
                                                            uncertainty=common.uncertainty),
                help="greedy joint mutual information of the batch with the model (Kirsch et al. 2019)",
                color="#00798c", step_columns=("joint_mi", "joint_entropy", "exact", "evaluated"),
                abilities={"pool_table"}, label_uncertainty=False)
