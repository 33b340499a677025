"""balpm: Bayesian Active Learner for Preference Modeling.

The package in layers (docs/architecture.md): ``balpm.data`` and ``balpm.features`` (tables and their
vectors), ``balpm.engine`` and ``balpm.acquisition`` (the model, uncertainty, entropy and the policies),
``balpm.experiment`` (the loop, sweeps, run folders), ``balpm.evidence`` (metrics, statistics, reports)
and ``balpm.cli``. Module names from before that split (``balpm.loop``, ``balpm.runs``, ...) still import,
as the same modules (balpm/_moved.py).
"""
from balpm import _moved

__version__ = "0.1.0"

_moved.install()
