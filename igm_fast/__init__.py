"""igm_fast: a fast trainer for IGM (idempotent generative model) on skeleton sequences."""

__version__ = "0.1.0"
