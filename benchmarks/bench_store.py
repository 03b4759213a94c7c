"""Time to write, read and verify a checkpoint with the store, against Scrapy's own JOBDIR persistence.

A typical checkpoint is a manifest with sidecars for 10,000 pending requests
(each a real ``Request.to_dict()`` as one JSON line of the codec, ~300 bytes) and 50,000
seen fingerprints; a large one has 1,000,000 requests and 1,000,000
fingerprints. For each, the median of several rounds of:

- write: sidecars streamed from ready JSON lines + manifest commit, fsyncs included
  (encoding Request objects is the checkpoint extension's work, timed apart);
- read: ``load_latest()`` from a fresh store (parse, checksum, every sidecar's
  SHA-256), then reading the sidecars' lines back;
- verify: the manifest checksum alone, and ``verify()`` (checksum + sidecar hashes).

Baseline in the same run: Scrapy's JOBDIR way of keeping the same requests
(its pickle disk queue, ``requests.seen`` lines), which does not fsync. Reads
come from the page cache, as at a resume right after a crash; the budgets of
the data model are write < 100 ms, read < 50 ms, checksum < 10 ms (typical).

    python benchmarks/bench_store.py [--rounds 5] [--skip-large]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scrapy import Request
from scrapy.squeues import _PickleFifoSerializationDiskQueue

from scrapy_resilience.checkpoint import codec
from scrapy_resilience.jobdir.store import CheckpointStore
from scrapy_resilience.model.entities import CheckpointData, CheckpointMetadata, ProgressState
from scrapy_resilience.model.serialization import checkpoint_to_document, compute_checksum


def pending_request(index: int) -> Request:
    """A realistic pending request of a catalogue crawl."""
    return Request(
        f"https://books.example.com/catalogue/product_{index}/index.html",
        headers={"Referer": "https://books.example.com/catalogue/page-1.html"},
        meta={"depth": 3, "download_slot": "books.example.com", "resilience_attempt": 1},
        priority=-3,
    )


def request_lines(count: int) -> list[bytes]:
    """The codec's JSON line of ``count`` requests (one real encoding, the URL varied, to spare time)."""
    template = codec.dumps(pending_request(0), None).replace("product_0/", "product_%d/").encode() + b"\n"
    return [template % index for index in range(count)]


def request_dicts(count: int) -> Iterator[dict[str, Any]]:
    """What Scrapy's JOBDIR queue pickles for the same requests."""
    template = pending_request(0).to_dict()
    for index in range(count):
        yield {**template, "url": f"https://books.example.com/catalogue/product_{index}/index.html"}


def timed(function: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """Median wall time in milliseconds over ``rounds``, and the last result."""
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def bench(label: str, requests: int, fingerprints: int, rounds: int, compress: bool) -> None:
    lines = request_lines(requests)
    seen = [hashlib.sha1(b"%d" % index).hexdigest().encode() + b"\n" for index in range(fingerprints)]
    size_mb = (sum(map(len, lines)) + sum(map(len, seen))) / 1e6
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        store = CheckpointStore(root / "job", job_id="bench", retention=2, compress=compress)

        def write() -> None:
            sidecars = {
                "pending": store.write_sidecar("pending", iter(lines)),
                "seen": store.write_sidecar("seen", iter(seen)),
            }
            store.commit(
                metadata=CheckpointMetadata(total_items=requests),
                data=CheckpointData(progress=ProgressState(total_count=requests)),
                sidecars=sidecars,
            )

        def read() -> int:
            loaded = CheckpointStore(root / "job", job_id="bench").load_latest()
            assert loaded is not None
            count = 0
            for ref in loaded.sidecars.values():
                with store.open_sidecar(ref) as handle:
                    count += sum(1 for _ in handle)
            return count

        write_ms, _ = timed(write, rounds)
        load_ms, _ = timed(lambda: CheckpointStore(root / "job", job_id="bench").load_latest(), rounds)
        read_ms, count = timed(read, rounds)
        assert count == requests + fingerprints
        loaded = store.load_latest()
        assert loaded is not None
        document = checkpoint_to_document(loaded.checkpoint)
        checksum_ms, _ = timed(lambda: compute_checksum(document), rounds)
        verify_ms, _ = timed(lambda: CheckpointStore(root / "job", job_id="bench").verify(), rounds)
        manifest_size = next((root / "job" / "checkpoints").glob("checkpoint-*")).stat().st_size
        stored_mb = sum(ref.size for ref in loaded.sidecars.values()) / 1e6
        scrapy_ms = scrapy_jobdir(root / "scrapy", requests, seen, rounds)
    finally:
        shutil.rmtree(root)
    print(
        f"{label:<8} {'gzip' if compress else 'plain':<5} {requests:>9,} requests {fingerprints:>9,} fingerprints "
        f"({size_mb:.0f} MB raw, {stored_mb:.0f} MB stored, manifest {manifest_size:,} B)\n"
        f"  write {write_ms:8.1f} ms   "
        f"Scrapy JOBDIR {scrapy_ms:.1f} ms, no fsync (ratio {write_ms / scrapy_ms:.2f})\n"
        f"  read  {load_ms:8.1f} ms load_latest (validated), {read_ms:.1f} ms with every sidecar line read\n"
        f"  verify {checksum_ms:7.2f} ms manifest checksum, {verify_ms:.1f} ms verify() with sidecar SHA-256"
    )


def scrapy_jobdir(directory: Path, requests: int, seen: list[bytes], rounds: int) -> float:
    """What plain Scrapy does with JOBDIR for the same state: pickle disk queue + requests.seen."""

    def write() -> None:
        shutil.rmtree(directory, ignore_errors=True)
        queue = _PickleFifoSerializationDiskQueue(str(directory / "requests.queue" / "p0"))
        for item in request_dicts(requests):
            queue.push(item)
        queue.close()
        with open(directory / "requests.seen", "ab") as file:
            for line in seen:
                file.write(line)

    return timed(write, rounds)[0]


def encoding_cost(count: int, rounds: int) -> None:
    """The checkpoint extension's part, apart: encoding Request objects as JSON lines."""
    requests = [pending_request(index) for index in range(count)]
    encode_ms, lines = timed(lambda: [codec.dumps(request, None) for request in requests], rounds)
    average = sum(map(len, lines)) / count + 1
    print(f"encoding {count:,} Request objects with the codec: {encode_ms:.1f} ms ({average:.0f} bytes a line)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    encoding_cost(10_000, args.rounds)
    for compress in (False, True):
        bench("typical", 10_000, 50_000, args.rounds, compress)
    if not args.skip_large:
        for compress in (False, True):
            bench("large", 1_000_000, 1_000_000, 1, compress)


if __name__ == "__main__":
    main()
