"""Retry: failure classification, backoff and Retry-After, held retries and requests waiting for their site.

``scrapy_resilience.retry.RetryMiddleware`` is the path users put in ``DOWNLOADER_MIDDLEWARES``.
"""

from scrapy_resilience.retry.middleware import RetryMiddleware

__all__ = ["RetryMiddleware"]
