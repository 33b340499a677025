"""balpm: Bayesian Active Learner for Preference Modeling."""
__version__ = "0.1.0"
