"""Signals sent by scrapy-resilience (connect with ``crawler.signals.connect``).

Public (documented in docs/reference/signals.md):

- ``checkpoint_saved(checkpoint, spider)``: a checkpoint was written durably.
- ``failure_recorded(event, spider)``: a FailureEvent was recorded.
- ``threshold_tripped(threshold, value, limit, spider)``: a resource threshold
  was crossed (``threshold`` is the setting name, e.g. ``"RESILIENCE_MEMORY_MB"``).
- ``browser_recycled(reason, spider)``: a scrapy-playwright browser was recycled.
- ``abort_triggered(reason, document, spider)``: the abort policy fired;
  ``document`` is the JSON document also POSTed to ``RESILIENCE_NOTIFY_URL``.

Internal (between our own components; not part of the contract):

- ``request_held(request, not_before)``: the retry middleware holds a retry
  of ``request`` until the wall-clock time ``not_before``; the checkpoint
  extension records it as pending work with its attempt count.
- ``browser_crashed(requests_failed, spider)``: a scrapy-playwright browser
  disconnected without being closed on purpose, and ``requests_failed``
  requests that were on it were failed at once (sent by ``browser/bridge``;
  the monitor counts it as a crash).
"""

checkpoint_saved = object()
failure_recorded = object()
threshold_tripped = object()
browser_recycled = object()
abort_triggered = object()

request_held = object()
browser_crashed = object()
