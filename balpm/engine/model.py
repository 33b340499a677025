"""The Bayesian preference model: an ensemble of K Bradley-Terry reward MLPs on frozen pair features.

All K members live in ONE batched module: every layer's weights are stacked into a ``(K, d_in, d_out)``
tensor and the members run together, so a training step or an evaluation pass is one forward and one
backward for the whole ensemble, not a Python loop of models. The float32 products run through
oneDNN's JIT kernels on CPU (``ModelConfig.matmul``: ``auto`` for models with >= 65,536 first-layer
weights; AVX-512 on any x86 vendor, where torch's MKL falls back to AVX2 on AMD CPUs, ~2x), else
through ``torch.baddbmm`` / ``@`` (MKL or OpenBLAS on CPU, cuBLAS on CUDA). The two agree to float32
rounding; each is deterministic.

Each member behaves exactly like a separately trained reward model (docs/method.md section 2):

* reward MLP ``D - 2048 - 256 - 1`` with tanh (``ModelConfig.hidden``), weights ``~ N(0, init_std^2)``,
  biases zero;
* Bradley-Terry likelihood ``p_m(y_c > y_r | x) = sigmoid(r_m(x, y_c) - r_m(x, y_r))`` and loss
  ``-log sigmoid(r_m(x, y_c) - r_m(x, y_r))``, averaged over the member's minibatch;
* AdamW (decoupled weight decay on weights, none on biases, as the Hugging Face trainer does),
  betas (0.9, 0.999), eps 1e-8, constant learning rate, no gradient clipping;
* its own initial weights and its own minibatch order, both from a ``torch.Generator`` seeded by
  ``(seed, member)`` (the reference reset one global seed for every member, so its members were
  identical at initialisation: docs/method.md flaw 2);
* early stopping on its own validation loss with ``patience``, its best epoch's weights restored.

The step loss is the SUM over members of each member's mean loss; as the members share no
parameters, each member's gradient (and AdamW update, which is element-wise) is exactly the one a
separate trainer would compute.

``fit`` always starts from the seeded initialisation (a full retrain, as in every round of the
reference), so the trained weights are a function of ``(cfg, seed, data)`` only: the same inputs give
bitwise identical probabilities on the same device with the same kernel.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from balpm import devices
from balpm.config import ModelConfig
from balpm.errors import ConfigError, FeatureError

__all__ = ["AdamW", "FitReport", "PreferenceEnsemble", "onednn_available", "resolve_device", "use_onednn",
           "valid_subset_rows"]

_EVAL_CHUNK = 2048  # pairs per evaluation pass (K * 2 * 2048 * H1 floats of activations)
_VALID_SUBSET_SEED = 0x5EED_7A11  # the fixed subset of ``ModelConfig.valid_subset`` (same every round)
_LIBC: list = []


def _libc():
    """glibc (for ``mallopt`` / ``malloc_trim``) or None on other platforms."""
    if not _LIBC:
        lib = None
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL("libc.so.6")
                lib.mallopt, lib.malloc_trim  # noqa: B018 - both must exist (glibc)
            except (OSError, AttributeError):
                lib = None
        _LIBC.append(lib)
    return _LIBC[0]


@contextlib.contextmanager
def _keep_large_blocks():
    """While training, ask glibc to serve large blocks from its heap and keep them for reuse.

    Every training step frees and re-allocates gradient tensors of ``K * D * H1`` floats (168 MB at
    K = 5, D = 4,096, H1 = 2,048); above glibc's mmap threshold each one is a fresh mmap whose pages
    the kernel faults in and zeroes: a third of a step's CPU time at that size. Raising the
    thresholds for the training loop keeps the freed blocks for reuse; afterwards glibc's defaults
    are restored and the free heap is returned to the system (``malloc_trim``). It changes where
    memory comes from, never a result.
    """
    lib = _libc()
    if lib is None:
        yield
        return
    lib.mallopt(-3, 1 << 30)   # M_MMAP_THRESHOLD: blocks up to 1 GiB come from the heap
    lib.mallopt(-1, 1 << 31)   # M_TRIM_THRESHOLD: keep up to 2 GiB of free heap top
    try:
        yield
    finally:
        lib.mallopt(-3, 128 * 1024)   # glibc's defaults
        lib.mallopt(-1, 128 * 1024)
        lib.malloc_trim(0)


@dataclass(frozen=True)
class FitReport:
    """What one ``PreferenceEnsemble.fit`` did.

    ``epochs``: epochs run (fewer than ``max_epochs`` when every member stopped early);
    ``best_epoch``: the latest best epoch over members (1-based; ``epochs`` without validation);
    ``train_loss``: mean over members of the last epoch's mean training loss;
    ``valid_loss``: mean over members of the validation loss of the restored weights (NaN without
    validation); ``seconds``: wall time of the fit. Per-member and per-epoch detail:
    ``best_epochs`` (K,), ``train_history`` (epochs,), ``valid_history`` (epochs,) ensemble means.
    """

    epochs: int
    best_epoch: int
    train_loss: float
    valid_loss: float
    seconds: float
    best_epochs: tuple[int, ...] = ()
    train_history: tuple[float, ...] = ()
    valid_history: tuple[float, ...] = ()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU (never mps: the model's kernels are checked on CPU and CUDA);
    ``cuda`` without a GPU is a one-line ConfigError (:func:`balpm.devices.resolve`)."""
    return devices.resolve(name, "model.device", mps=False)


def use_onednn(cfg: ModelConfig, input_dim: int, device: torch.device) -> bool:
    """Whether the model's matrix products run through oneDNN (``ModelConfig.matmul``; CPU float32 only)."""
    choice = getattr(cfg, "matmul", "blas")
    if device.type != "cpu" or getattr(cfg, "precision", "fp32") != "fp32" or choice == "blas":
        return False
    if choice == "onednn":
        if not onednn_available():
            raise ConfigError("model.matmul is 'onednn' but this torch build has no oneDNN (mkldnn); use auto or blas")
        return True
    return onednn_available() and int(input_dim) * int(cfg.hidden[0] if cfg.hidden else 1) >= _DNN_MIN_WEIGHTS


def valid_subset_rows(n_valid: int, size: int) -> np.ndarray:
    """The sorted rows of the fixed, seeded validation subset of ``ModelConfig.valid_subset`` (same every round)."""
    if size <= 0 or size >= n_valid:
        return np.arange(n_valid)
    return np.sort(np.random.default_rng(_VALID_SUBSET_SEED).choice(n_valid, size=size, replace=False))


def _member_seed(seed: int, member: int, stream: int) -> int:
    """A 63-bit seed for member ``member``'s stream ``stream`` (0: init, 1: minibatch order)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(member), int(stream)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF


def _check_config(cfg: ModelConfig) -> None:
    if cfg.ensemble_size < 1:
        raise ConfigError(f"model.ensemble_size must be >= 1 (got {cfg.ensemble_size})")
    if any(int(h) < 1 for h in cfg.hidden):
        raise ConfigError(f"model.hidden widths must all be >= 1 (got {tuple(cfg.hidden)})")
    if not (cfg.init_std > 0) or not np.isfinite(cfg.init_std):
        raise ConfigError(f"model.init_std must be a positive number (got {cfg.init_std})")
    if not (cfg.lr > 0) or not np.isfinite(cfg.lr):
        raise ConfigError(f"model.lr must be a positive number (got {cfg.lr})")
    if not (cfg.weight_decay >= 0):
        raise ConfigError(f"model.weight_decay must be >= 0 (got {cfg.weight_decay})")
    if cfg.batch_size < 1 or cfg.max_epochs < 1 or cfg.patience < 1:
        raise ConfigError(
            f"model.batch_size, max_epochs and patience must be >= 1 "
            f"(got {cfg.batch_size}, {cfg.max_epochs}, {cfg.patience})")
    if cfg.validation not in ("valid", "none"):
        raise ConfigError(f"unknown model.validation {cfg.validation!r}; choose valid or none")
    if getattr(cfg, "precision", "fp32") not in ("fp32", "bf16"):
        raise ConfigError(f"unknown model.precision {cfg.precision!r}; choose fp32 or bf16")
    if getattr(cfg, "matmul", "blas") not in ("auto", "onednn", "blas"):
        raise ConfigError(f"unknown model.matmul {cfg.matmul!r}; choose auto, onednn or blas")
    if int(getattr(cfg, "valid_subset", 0)) < 0:
        raise ConfigError(f"model.valid_subset must be >= 0 (got {cfg.valid_subset}); 0 uses the whole validation split")


class AdamW:
    """AdamW (Loshchilov & Hutter; the update of ``torch.optim.AdamW``) over groups ``(params, weight_decay)``.

    A direct implementation, not ``torch.optim``: the first ``torch.optim`` step imports
    ``torch._dynamo`` (seconds of one-time overhead per process). It uses torch's fused AdamW kernel
    (``torch._fused_adamw_``, one pass over memory) when this torch build has it for the device, and
    ``torch._foreach_*`` otherwise. Tested against ``torch.optim.AdamW``.
    """

    def __init__(self, groups: Sequence[tuple[Sequence[torch.Tensor], float]], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [(list(params), float(wd)) for params, wd in groups if len(params)]
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.t = 0
        self.exp_avg = [[torch.zeros_like(p) for p in ps] for ps, _ in self.groups]
        self.exp_avg_sq = [[torch.zeros_like(p) for p in ps] for ps, _ in self.groups]
        self.fused = all(_fused_ok(p.device) for ps, _ in self.groups for p in ps[:1])
        self.steps = [[torch.zeros((), dtype=torch.float32, device=p.device) for p in ps] for ps, _ in self.groups]

    def zero_grad(self) -> None:
        """Drop every parameter's gradient."""
        for ps, _ in self.groups:
            for p in ps:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter from its ``.grad``."""
        self.t += 1
        b1, b2 = self.betas
        for (ps, wd), m, v, steps in zip(self.groups, self.exp_avg, self.exp_avg_sq, self.steps):
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
            if self.fused:
                torch._foreach_add_(steps, 1.0)
                torch._fused_adamw_(ps, grads, m, v, [], steps, lr=self.lr, beta1=b1, beta2=b2, weight_decay=wd,
                                    eps=self.eps, amsgrad=False, maximize=False)
                continue
            if wd:
                torch._foreach_mul_(ps, 1.0 - self.lr * wd)
            torch._foreach_lerp_(m, grads, 1.0 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, 1.0 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, (1.0 - b2 ** self.t) ** 0.5)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(ps, m, denom, -self.lr / (1.0 - b1 ** self.t))


_FUSED: dict[str, bool] = {}


def _fused_ok(device: torch.device) -> bool:
    """Whether ``torch._fused_adamw_`` runs on ``device`` (probed once on a 1-element tensor)."""
    key = str(device)
    if key not in _FUSED:
        try:
            p, g = torch.zeros(1, device=device), torch.ones(1, device=device)
            m, v = torch.zeros(1, device=device), torch.zeros(1, device=device)
            step = torch.ones((), dtype=torch.float32, device=device)
            torch._fused_adamw_([p], [g], [m], [v], [], [step], lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0,
                                eps=1e-8, amsgrad=False, maximize=False)
            _FUSED[key] = bool(torch.isfinite(p).all()) and abs(float(p[0]) + 0.1) < 1e-4
        except Exception:  # noqa: BLE001 - any failure means: use the foreach path
            _FUSED[key] = False
    return _FUSED[key]


_DNN_MIN_WEIGHTS = 1 << 16  # matmul "auto": below this many first-layer weights oneDNN's per-call overhead dominates


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's linear kernel for CPU float32 tensors."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _dnn_linear(x_R_I: torch.Tensor, w_O_I: torch.Tensor, b_O: torch.Tensor | None, tanh: bool = False) -> torch.Tensor:
    """``x @ w.T + b`` by oneDNN's float32 JIT kernel (strided views accepted, no copies); ``tanh``: with
    tanh applied inside the kernel (a post-op: no second pass over the output)."""
    return torch.ops.mkldnn._linear_pointwise(x_R_I, w_O_I, b_O, "tanh" if tanh else "none", [], "")


class _MemberLinear(torch.autograd.Function):
    """Per-member ``x[k] @ w[k] + b[k]`` (weights ``(K, in, out)``) with oneDNN kernels forward and backward.

    The same arithmetic as ``torch.baddbmm(b, x, w)`` and its autograd, in float32, by another kernel
    (oneDNN instead of MKL/OpenBLAS: results agree to float32 rounding, and are deterministic).
    """

    @staticmethod
    def forward(ctx, x_K_R_I: torch.Tensor, w_K_I_O: torch.Tensor, b_K_1_O: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x_K_R_I, w_K_I_O)
        return torch.stack([_dnn_linear(x_K_R_I[k], w_K_I_O[k].T, b_K_1_O[k, 0]) for k in range(w_K_I_O.shape[0])])

    @staticmethod
    def backward(ctx, g_K_R_O: torch.Tensor):  # noqa: D102
        x_K_R_I, w_K_I_O = ctx.saved_tensors
        g_K_R_O = g_K_R_O.contiguous()
        k = w_K_I_O.shape[0]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.stack([_dnn_linear(g_K_R_O[m], w_K_I_O[m], None) for m in range(k)])
        if ctx.needs_input_grad[1]:
            gw = torch.stack([_dnn_linear(x_K_R_I[m].T, g_K_R_O[m].T, None) for m in range(k)])
        if ctx.needs_input_grad[2]:
            gb = g_K_R_O.sum(dim=1, keepdim=True)
        return gx, gw, gb


class _BatchedMLP(nn.Module):
    """K tanh MLPs ``D -> hidden... -> 1`` with stacked weights ``(K, d_in, d_out)``.

    ``dnn``: run the matrix products through oneDNN (``ModelConfig.matmul``), else through torch's
    default kernels (``baddbmm`` / ``@``: MKL or OpenBLAS on CPU, cuBLAS on CUDA).
    """

    def __init__(self, k: int, dims: Sequence[int], dnn: bool = False) -> None:
        super().__init__()
        self.k = k
        self.dims = tuple(int(d) for d in dims)
        self.dnn = bool(dnn)
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(k, a, b)) for a, b in zip(self.dims[:-1], self.dims[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(k, 1, b)) for b in self.dims[1:]])

    def forward_members(self, x_K_B_D: torch.Tensor) -> torch.Tensor:
        """Rewards ``r_K_B`` where member k sees its own rows ``x_K_B_D[k]``."""
        h = x_K_B_D
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = _MemberLinear.apply(h, w, b) if self.dnn and h.dtype == torch.float32 else torch.baddbmm(b, h, w)
            if i < last:
                h = torch.tanh(h)
        return h.squeeze(-1)

    def flat_first_layer(self) -> torch.Tensor:
        """The first layer's weights as one GEMM operand (a copy: compute it once per pass).

        ``(D, K * H1)`` for torch's kernels; ``(K * H1, D)`` (oneDNN's ``out x in`` layout) with ``dnn``.
        """
        w0 = self.weights[0]
        k, d, h1 = w0.shape
        if self.dnn:
            return w0.permute(0, 2, 1).reshape(k * h1, d)
        return w0.permute(1, 0, 2).reshape(d, k * h1)

    def forward_shared(self, x_B_D: torch.Tensor, w0_flat: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards ``r_K_B`` where every member sees the same rows (first layer as one GEMM).

        ``w0_flat``: :meth:`flat_first_layer`, when the caller reuses it over several chunks.
        """
        w0, b0 = self.weights[0], self.biases[0]
        k, d, h1 = w0.shape
        if w0_flat is None:
            w0_flat = self.flat_first_layer()
        if self.dnn and x_B_D.dtype == torch.float32:
            return self._forward_shared_dnn(x_B_D, w0_flat)
        h = (x_B_D @ w0_flat).view(-1, k, h1).transpose(0, 1) + b0
        if len(self.weights) == 1:
            return h.squeeze(-1)
        h = torch.tanh(h)
        last = len(self.weights) - 1
        for i in range(1, len(self.weights)):
            h = torch.baddbmm(self.biases[i], h, self.weights[i])
            if i < last:
                h = torch.tanh(h)
        return h.squeeze(-1)

    def _forward_shared_dnn(self, x_B_D: torch.Tensor, w0_flat: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_shared` by oneDNN: one ``B x D x K*H1`` product, then each member's layers."""
        k, h1 = self.k, self.dims[1]
        last = len(self.weights) - 1
        h = _dnn_linear(x_B_D, w0_flat, self.biases[0].reshape(k * h1), tanh=last > 0)   # (B, K * H1)
        if last == 0:
            return h.T.contiguous()
        out = []
        for m in range(k):
            hm = h[:, m * h1:(m + 1) * h1]
            for i in range(1, len(self.weights)):
                hm = _dnn_linear(hm, self.weights[i][m].T, self.biases[i][m, 0], tanh=i < last)
            out.append(hm.squeeze(-1))
        return torch.stack(out)


class PreferenceEnsemble:
    """K Bradley-Terry reward MLPs on frozen pair features, trained as one batched module.

    ``PreferenceEnsemble(cfg, input_dim, seed)``; ``fit(train_N_2_D, valid_N_2_D=None) -> FitReport``
    (column 0 of each pair: prompt + chosen answer; column 1: prompt + rejected answer);
    ``predict_probs(pairs_N_2_D) -> probs_N_K`` float64, each member's P(first > second).
    Runs on CUDA when ``cfg.device`` is ``auto`` and a GPU is present, else on CPU.
    """

    def __init__(self, cfg: ModelConfig, input_dim: int, seed: int) -> None:
        _check_config(cfg)
        if int(input_dim) < 1:
            raise FeatureError(f"input_dim must be >= 1 (got {input_dim})")
        self.cfg = cfg
        self.input_dim = int(input_dim)
        self.seed = int(seed)
        self.k = int(cfg.ensemble_size)
        self.device = resolve_device(cfg.device)
        self.net = _BatchedMLP(self.k, (self.input_dim, *[int(h) for h in cfg.hidden], 1),
                               dnn=use_onednn(cfg, self.input_dim, self.device)).to(self.device)
        self._fresh = False
        self._shift_D: torch.Tensor | None = None
        self._scale_D: torch.Tensor | None = None
        self.reset()

    # ---- parameters ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Re-draw every member's initial weights from its own generator (biases zero)."""
        with torch.no_grad():
            for m in range(self.k):
                gen = torch.Generator().manual_seed(_member_seed(self.seed, m, 0))
                for w in self.net.weights:
                    draw = torch.randn(tuple(w.shape[1:]), generator=gen, dtype=torch.float32)
                    w[m].copy_(draw.mul_(self.cfg.init_std))
            for b in self.net.biases:
                b.zero_()
        self._fresh = True

    def member_weights(self, member: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Member ``member``'s layers as ``(W (d_in, d_out), b (d_out,))`` float32 copies."""
        return [(w[member].detach().cpu().numpy().copy(), b[member, 0].detach().cpu().numpy().copy())
                for w, b in zip(self.net.weights, self.net.biases)]

    # ---- validation ---------------------------------------------------------------------------
    def _as_pairs(self, pairs: np.ndarray | torch.Tensor, what: str, *, allow_empty: bool = False) -> torch.Tensor:
        arr = pairs.detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
        if arr.ndim != 3 or arr.shape[1] != 2:
            raise FeatureError(f"{what} must have shape (N, 2, D) (chosen, rejected); got {arr.shape}")
        if arr.shape[2] != self.input_dim:
            raise FeatureError(
                f"{what} have dimension {arr.shape[2]} but the model was built for {self.input_dim}; "
                f"use features from the same feature model or rebuild the ensemble")
        if arr.shape[0] == 0 and not allow_empty:
            raise FeatureError(f"{what} are empty; pass at least one comparison")
        if not np.issubdtype(arr.dtype, np.number):
            raise FeatureError(f"{what} must be numeric (got dtype {arr.dtype})")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.writeable:  # a read-only memory map: torch wants its own copy
            arr = arr.copy()
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
            raise FeatureError(
                f"{what} contain {int(bad.sum())} non-finite values (first in row {row}); recompute the features")
        return torch.from_numpy(arr).to(self.device)

    # ---- input scaling ------------------------------------------------------------------------
    def _fit_standardizer(self, train_N_2_D: torch.Tensor) -> None:
        """With ``cfg.standardize``, remember the training pairs' per-dimension mean and std."""
        if not self.cfg.standardize:
            self._shift_D = self._scale_D = None
            return
        flat = train_N_2_D.reshape(-1, self.input_dim).double()
        std = flat.std(dim=0, unbiased=False)
        self._shift_D = flat.mean(dim=0).float()
        self._scale_D = torch.where(std > 1e-8, std, torch.ones_like(std)).float()

    def _standardize(self, pairs: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_shift_D", None) is None:
            return pairs
        return (pairs - self._shift_D) / self._scale_D

    # ---- training -----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast with ``cfg.precision == "bf16"`` (an approximation), else nothing."""
        if getattr(self.cfg, "precision", "fp32") == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _margins(self, pairs_N_2_D: torch.Tensor) -> torch.Tensor:
        """``r(first) - r(second)`` per member, ``(K, N)`` float32, evaluated in chunks.

        The first layer's weights are laid out for one GEMM once per call (not once per chunk).
        """
        out = []
        with torch.inference_mode(), self._autocast():
            w0_flat = self.net.flat_first_layer()
            for s in range(0, pairs_N_2_D.shape[0], _EVAL_CHUNK):
                x = pairs_N_2_D[s:s + _EVAL_CHUNK]
                r_K_2B = self.net.forward_shared(x.reshape(-1, self.input_dim), w0_flat)
                r_K_B_2 = r_K_2B.float().view(self.k, -1, 2)
                out.append(r_K_B_2[..., 0] - r_K_B_2[..., 1])
        if not out:
            return torch.zeros(self.k, 0, device=self.device)
        return torch.cat(out, dim=1)

    def _valid_loss_K(self, valid: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(-self._margins(valid)).mean(dim=1)

    def fit(self, train_N_2_D: np.ndarray, valid_N_2_D: np.ndarray | None = None) -> FitReport:
        """Train all members from their seeded initialisation; early-stop on ``valid_N_2_D``.

        Without validation pairs (None or empty, or with ``cfg.validation == "none"``) every member
        keeps its last epoch's weights. With them, each member keeps the weights of its epoch with the
        lowest validation loss and stops counting once ``patience`` epochs in a row did not improve it;
        training ends when every member has stopped or after ``max_epochs``. Returns a :class:`FitReport`.
        """
        with _keep_large_blocks():
            return self._fit(train_N_2_D, valid_N_2_D)

    def _fit(self, train_N_2_D: np.ndarray, valid_N_2_D: np.ndarray | None) -> FitReport:
        t0 = time.perf_counter()
        train = self._as_pairs(train_N_2_D, "training pairs")
        use_valid = valid_N_2_D is not None and len(valid_N_2_D) > 0 and self.cfg.validation == "valid"
        if use_valid and 0 < int(getattr(self.cfg, "valid_subset", 0)) < len(valid_N_2_D):
            valid_N_2_D = valid_N_2_D[valid_subset_rows(len(valid_N_2_D), int(self.cfg.valid_subset))]
        valid = self._as_pairs(valid_N_2_D, "validation pairs") if use_valid else None
        if not self._fresh:
            self.reset()
        self._fresh = False
        self._fit_standardizer(train)
        train = self._standardize(train)
        valid = self._standardize(valid) if valid is not None else None
        cfg, k, n, d = self.cfg, self.k, train.shape[0], self.input_dim
        decay = [w for w in self.net.weights]
        no_decay = [b for b in self.net.biases]
        opt = AdamW([(decay, cfg.weight_decay), (no_decay, 0.0)], cfg.lr)
        gens = [torch.Generator().manual_seed(_member_seed(self.seed, m, 1)) for m in range(k)]
        flat = train.reshape(n * 2, d)
        bs = int(cfg.batch_size)
        autocast = self._autocast

        best_loss_K = torch.full((k,), float("inf"), device=self.device)
        best_epoch_K = np.zeros(k, dtype=np.int64)
        bad_K = np.zeros(k, dtype=np.int64)
        best_params = [p.detach().clone() for p in self.net.parameters()] if valid is not None else None
        train_hist: list[float] = []
        valid_hist: list[float] = []
        epochs = 0
        for epoch in range(1, int(cfg.max_epochs) + 1):
            order_K_N = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(self.device)
            loss_sum_K = torch.zeros(k, device=self.device)
            for s in range(0, n, bs):
                idx_K_B = order_K_N[:, s:s + bs]
                b = idx_K_B.shape[1]
                rows = torch.stack([2 * idx_K_B, 2 * idx_K_B + 1], dim=-1).reshape(k, 2 * b)
                x_K_2B_D = torch.index_select(flat, 0, rows.reshape(-1)).view(k, 2 * b, d)
                with autocast():
                    r_K_B_2 = self.net.forward_members(x_K_2B_D).float().view(k, b, 2)
                loss_K = nn.functional.softplus(r_K_B_2[..., 1] - r_K_B_2[..., 0]).mean(dim=1)
                opt.zero_grad()
                loss_K.sum().backward()
                opt.step()
                loss_sum_K += loss_K.detach() * b
            epochs = epoch
            train_hist.append(float((loss_sum_K / n).mean()))
            if valid is None:
                continue
            vloss_K = self._valid_loss_K(valid)
            valid_hist.append(float(vloss_K.mean()))
            better_K = vloss_K < best_loss_K
            best_loss_K = torch.where(better_K, vloss_K, best_loss_K)
            better = better_K.cpu().numpy()
            best_epoch_K[better] = epoch
            bad_K = np.where(better, 0, bad_K + 1)
            if better.any():
                with torch.no_grad():
                    for bp, p in zip(best_params, self.net.parameters()):
                        bp[better_K] = p.detach()[better_K]
            if (bad_K >= cfg.patience).all():
                break
        if valid is not None:
            with torch.no_grad():
                for bp, p in zip(best_params, self.net.parameters()):
                    p.copy_(bp)
            valid_loss = float(best_loss_K.mean())
            best_epochs = tuple(int(e) for e in best_epoch_K)
        else:
            valid_loss = float("nan")
            best_epochs = (epochs,) * k
        return FitReport(
            epochs=epochs, best_epoch=max(best_epochs), train_loss=train_hist[-1], valid_loss=valid_loss,
            seconds=time.perf_counter() - t0, best_epochs=best_epochs,
            train_history=tuple(train_hist), valid_history=tuple(valid_hist))

    # ---- prediction ---------------------------------------------------------------------------
    def predict_probs(self, pairs_N_2_D: np.ndarray) -> np.ndarray:
        """Each member's P(first answer > second answer): ``probs_N_K`` float64."""
        pairs = self._standardize(self._as_pairs(pairs_N_2_D, "pairs to predict", allow_empty=True))
        margins_K_N = self._margins(pairs).double()
        return torch.sigmoid(margins_K_N).T.contiguous().cpu().numpy()

    def predict_rewards(self, feats_N_D: np.ndarray) -> np.ndarray:
        """Each member's reward of single (prompt + answer) feature rows: ``rewards_N_K`` float64."""
        feats = np.asarray(feats_N_D)
        if feats.ndim != 2:
            raise FeatureError(f"reward features must have shape (N, D); got {feats.shape}")
        pairs = self._standardize(self._as_pairs(np.stack([feats, feats], axis=1), "reward features", allow_empty=True))
        with torch.inference_mode(), self._autocast():
            w0_flat = self.net.flat_first_layer()
            out = [self.net.forward_shared(pairs[s:s + _EVAL_CHUNK, 0], w0_flat).float()
                   for s in range(0, pairs.shape[0], _EVAL_CHUNK)]
        if not out:
            return np.zeros((0, self.k))
        return torch.cat(out, dim=1).double().T.contiguous().cpu().numpy()
