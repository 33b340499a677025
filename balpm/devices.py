"""Device names, checked and resolved in one place: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` and ``mps``.

:func:`check_name` (no torch: the config validates names at start-up), :func:`check_available`
(a named accelerator must be visible) and :func:`resolve` (``auto`` -> the best device present) are what
the config (``model.device``, ``features.device``), the preference model and the feature encoder use.
torch is imported inside the functions that need it: importing the config must not pay for torch.
"""
from __future__ import annotations

import re
from typing import Any

from balpm.errors import BalpmError, ConfigError

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_name(device: str, where: str = "device") -> str:
    """``device`` when it is one of :data:`DEVICE_NAMES` (``cuda:N`` with a number), else a one-line ConfigError."""
    if not isinstance(device, str) or not _NAME.fullmatch(device):
        raise ConfigError(f"{where}: unknown device {device!r}; use {', '.join(DEVICE_NAMES)}")
    return device


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def check_available(device: str, where: str = "device", error: type[BalpmError] = ConfigError) -> None:
    """A one-line ``error`` when ``device`` names an accelerator this machine does not have (``auto`` and ``cpu``
    always pass); nothing is imported for them."""
    check_name(device, where)
    if device.startswith("cuda"):
        import torch  # lazy: 2 s, and only an accelerator name needs it

        if not torch.cuda.is_available():
            raise error(f"{where} is {device!r} but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                        "use --device auto or cpu")
    elif device == "mps":
        import torch  # lazy: as above

        if not _mps_available(torch):
            raise error(f"{where} is 'mps' but Apple mps is not available; use auto or cpu")


def resolve(device: str = "auto", where: str = "device", *, mps: bool = True,
            error: type[BalpmError] = ConfigError) -> Any:
    """The ``torch.device`` of ``device``: ``auto`` picks cuda, then (with ``mps``) Apple mps, then cpu; a named
    device is checked by :func:`check_available` (a one-line ``error`` when absent)."""
    import torch  # lazy: the callers already hold torch; importing this module must not

    check_name(device, where)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    check_available(device, where, error)
    return torch.device(device)
