"""The monitor: resource readings and thresholds, the abort policy (judge, actions), the outcome middleware.

``scrapy_resilience.monitor.MonitorExtension`` is the path users put in ``EXTENSIONS``.
"""

from scrapy_resilience.monitor.extension import MonitorExtension

__all__ = ["MonitorExtension"]
