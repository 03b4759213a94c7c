"""Writes checkpoints in a loop until killed; run by ``test_store_crash.py``.

``python tests/store_writer.py DIR plain|gzip`` prints ``STARTED``, then
``COMMITTED <sequence>`` after each commit returns, flushed, so the test knows
what was durable before the instant it killed this process. Each checkpoint
has a sidecar shared by the whole run and one of its own (a few MB together)
whose content is derived from its sequence number, so that the test can tell
that a loaded checkpoint comes with its own sidecars.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from scrapy_resilience.jobdir.store import CheckpointStore
from scrapy_resilience.model.entities import CheckpointData, CheckpointMetadata

RETENTION = 3
PENDING_LINES = 10_000  # ~ 3 MB of request-like lines per checkpoint


def pending_lines(sequence: int) -> Iterator[bytes]:
    """The content of checkpoint ``sequence``'s own sidecar."""
    for index in range(PENDING_LINES):
        yield (
            b'{"url": "http://127.0.0.1/product/%d.html", "method": "GET", "headers": {}, "priority": 0, '
            b'"meta": {"checkpoint": %d, "depth": 3, "download_slot": "127.0.0.1"}, "dont_filter": false, '
            b'"callback": "parse_product", "errback": null, "flags": [], "cb_kwargs": {}, "cookies": {}}\n'
            % (index, sequence)
        )


def main() -> None:
    directory, mode = sys.argv[1], sys.argv[2]
    store = CheckpointStore(directory, job_id="crash-test", retention=RETENTION, compress=mode == "gzip")
    print("STARTED", flush=True)
    shared = store.write_sidecar("fingerprints", (b"%040x\n" % index for index in range(20_000)))
    while True:
        sequence = store.next_sequence
        own = store.write_sidecar("pending", pending_lines(sequence))
        checkpoint = store.commit(
            metadata=CheckpointMetadata(completed_items=sequence),
            data=CheckpointData(job_state={"writer": "store_writer"}),
            sidecars={"fingerprints": shared, "pending": own},
        )
        print("COMMITTED", checkpoint.sequence_number, flush=True)


if __name__ == "__main__":
    main()
