"""Checkpoints and resume: the frontier ledger and its middlewares, the dupefilter, the extension, sealing, refill.

``scrapy_resilience.checkpoint.CheckpointExtension`` is the path users put in ``EXTENSIONS``.
"""

from scrapy_resilience.checkpoint.extension import CheckpointExtension

__all__ = ["CheckpointExtension"]
