"""A read-only view of a scrapy-redis job on the leased queue, for ``scrapy resilience redis URL``.

What a person asks of a job with many workers: how much is still to crawl,
which workers hold what (and whether they are alive, i.e. still renewing their
leases), which workers died and how many requests were put back for them, which
sites are paused for every worker (a Retry-After) and whether the job was
stopped by a shared abort. Only reads: safe on a live job.
"""

from __future__ import annotations

from typing import Any

from scrapy_resilience.cli.report import table
from scrapy_resilience.redis.keys import JobKeys, as_str


def job_keys(queue: str | None, spider: str | None) -> JobKeys:
    """The keys of a job named by its queue key, or by its spider with scrapy-redis's default keys."""
    if queue is None:
        queue = f"{spider}:requests"
    # scrapy-redis's default keys are "<spider>:requests" and "<spider>:dupefilter".
    base = queue.removesuffix(":requests")
    return JobKeys(queue=queue, dupefilter=f"{base}:dupefilter")


def job_document(client: Any, job: JobKeys) -> dict[str, Any]:
    """Pending, seen, workers with their leases, dead workers, paused sites and the abort record, as JSON."""
    kind = as_str(client.type(job.queue))
    pending = client.zcard(job.queue) if kind == "zset" else client.llen(job.queue) if kind == "list" else 0
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    workers = []
    for raw, deadline in client.zrange(job.workers, 0, -1, withscores=True):
        worker = as_str(raw)
        leases = [as_str(lease) for lease in client.hkeys(job.leases(worker))]
        held = sum(lease.startswith("h") for lease in leases)
        workers.append({
            "worker": worker, "leased": len(leases) - held, "held_retries": held,
            "lease_expires_in": round((deadline - now_ms) / 1000, 1), "alive": deadline > now_ms,
        })  # fmt: skip
    dead = [{"worker": as_str(worker), "reclaimed": int(count)} for worker, count in client.hgetall(job.dead).items()]
    abort = as_str(client.get(job.abort) or "")
    pauses = []
    for slot, record in sorted(client.hgetall(job.pauses).items()):
        until, worker = as_str(record).split("\t", 1)
        if int(until) > now_ms:  # an ended pause stays until the next one is written
            pauses.append({"slot": as_str(slot), "ends_in": round((int(until) - now_ms) / 1000, 1), "seen_by": worker})
    return {
        "queue": job.queue,
        "pending": int(pending),
        "seen": int(client.scard(job.dupefilter)),
        "workers": workers,
        "dead_workers": sorted(dead, key=lambda entry: entry["worker"]),
        "reclaimed": sum(entry["reclaimed"] for entry in dead),
        "paused_sites": pauses,
        "abort": _abort(abort),
    }


def _abort(record: str) -> dict[str, Any] | None:
    if not record:
        return None
    at, reason, worker = record.split("\t", 2)
    return {"reason": reason, "decided_by": worker, "at_ms": int(at)}


def render(document: dict[str, Any]) -> str:
    lines = [f"Redis job {document['queue']}: {document['pending']} pending, {document['seen']} seen"]
    if document["workers"]:
        rows = [[w["worker"], w["leased"], w["held_retries"], w["lease_expires_in"], "yes" if w["alive"] else "no"]
                for w in document["workers"]]
        lines += ["", table(["worker", "leased", "held retries", "expires in (s)", "alive"], rows)]
    else:
        lines.append("No worker holds leases.")
    if document["dead_workers"]:
        rows = [[d["worker"], d["reclaimed"]] for d in document["dead_workers"]]
        lines += ["", f"Dead workers ({document['reclaimed']} requests put back):",
                  table(["worker", "reclaimed"], rows)]
    for pause in document["paused_sites"]:
        lines.append(f"Paused for every worker: {pause['slot']}, {pause['ends_in']} s more (Retry-After seen by "
                     f"{pause['seen_by']})")
    if document["abort"]:
        abort = document["abort"]
        lines += ["", f"Stopped by {abort['decided_by']}: {abort['reason']}"]
    return "\n".join(lines)
