"""The one definition of the ``resilience`` subcommands.

Shared by ``scrapy resilience`` and ``python -m scrapy_resilience``.

Exit codes of the inspection subcommands: 0 fine; 1 ``verify`` found a
corrupted checkpoint, or ``show`` was asked for one; 2 bad usage, a directory
that does not exist, or an unknown sequence number. ``crawl`` exits with the
supervisor's outcome codes (see ``scrapy_resilience.cli.supervisor``); its own
usage errors exit 1 (failed to start), since 2 means "aborted" there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scrapy_resilience.cli import jobview, redisview, report, supervisor
from scrapy_resilience.cli.supervisor import MAX_RESTART_DELAY, Outcome

USAGE_ERROR = 2
FAILED_TO_START = int(Outcome.FAILED_TO_START)
SUBCOMMANDS = ("list", "show", "verify", "events", "crawl", "redis")
DESCRIPTION = (
    "Inspect the checkpoints and failure events of a job directory (the RESILIENCE_CHECKPOINT_DIR of a crawl) "
    "or a scrapy-redis job, or run a crawl under a supervisor that restarts and resumes it."
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, allow_abbrev=False)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("directory", metavar="DIR", help="the job directory (RESILIENCE_CHECKPOINT_DIR)")
    common.add_argument("--json", action="store_true", help="print JSON for machines instead of a table")
    subs = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    subs.add_parser("list", parents=[common], help="checkpoints with status, sequence, time, progress and size")
    show = subs.add_parser("show", parents=[common], help="one checkpoint in detail (the newest valid by default)")
    show.add_argument("sequence", metavar="SEQ", nargs="?", type=int, help="the checkpoint's sequence number")
    show.add_argument("--reveal-secrets", action="store_true", help="print cookie and storage values unmasked")
    subs.add_parser("verify", parents=[common], help="check every checkpoint; exit 1 when any is corrupted")
    events = subs.add_parser("events", parents=[common], help="failure events grouped by category and message")
    events.add_argument("--all", action="store_true", help="list the events one by one instead of grouped")
    events.add_argument("--category", help="only events of this category (network, browser, system, ...)")
    job = subs.add_parser("redis", help="a scrapy-redis job on the leased queue: pending, leases per worker, "
                          "dead workers, reclaimed requests")
    job.add_argument("url", metavar="URL", help="the workers' REDIS_URL, e.g. redis://127.0.0.1:6379/0")
    which = job.add_mutually_exclusive_group(required=True)
    which.add_argument("--spider", help="the spider's name (scrapy-redis's default keys, <spider>:requests)")
    which.add_argument("--queue", help="the job's SCHEDULER_QUEUE_KEY, once formatted")
    job.add_argument("--json", action="store_true", help="print JSON for machines instead of a table")
    crawl = subs.add_parser(
        "crawl", allow_abbrev=False, usage="%(prog)s [--restart-delay SECONDS] SPIDER [scrapy crawl options]",
        help="run `scrapy crawl SPIDER ...` under a supervisor that restarts and resumes it",
        description="Every option other than --restart-delay goes to `scrapy crawl` unchanged. Exit codes: "
        "0 finished, 1 failed to start, 2 aborted by the abort policy, 3 crash loop.",
    )  # fmt: skip
    crawl.add_argument(
        "--restart-delay", type=_seconds, default=1.0, metavar="SECONDS",
        help="seconds before the first restart, doubled after each run without progress (default 1, max 60)",
    )  # fmt: skip
    return parser


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_RESTART_DELAY:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to {MAX_RESTART_DELAY:g}")
    return value


def main(argv: list[str], prog: str = "python -m scrapy_resilience") -> int:
    """Run one subcommand and return its exit code."""
    parser = build_parser(prog)
    try:
        opts, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error or the help
        if exc.code == USAGE_ERROR and argv[:1] == ["crawl"]:
            return FAILED_TO_START  # for the supervisor, 2 means "aborted": a usage error is a failed start
        return int(exc.code or 0)
    if opts.subcommand == "crawl":
        return _crawl(opts, extra)
    if opts.subcommand == "redis" and not extra:
        return _redis(opts, prog)
    if extra:
        parser.print_usage(sys.stderr)
        print("{}: error: unrecognized arguments: {}".format(prog, " ".join(extra)), file=sys.stderr)
        return USAGE_ERROR

    try:
        directory = jobview.job_directory(opts.directory)
    except jobview.JobDirError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    handler: Callable[[argparse.Namespace, Path], tuple[int, Any, str]] = HANDLERS[opts.subcommand]
    code, document, text = handler(opts, directory)
    if opts.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(text, file=sys.stderr if code == USAGE_ERROR else sys.stdout)
    return code


def _list(opts: argparse.Namespace, directory: Path) -> tuple[int, Any, str]:

    summaries = [jobview.entry_summary(entry) for entry in jobview.open_store(directory).entries()]
    return 0, {"directory": str(directory), "checkpoints": summaries}, report.render_list(
        str(directory), summaries
    )


def _verify(opts: argparse.Namespace, directory: Path) -> tuple[int, Any, str]:

    summaries = [jobview.entry_summary(entry) for entry in jobview.open_store(directory).verify()]
    corrupted = [summary for summary in summaries if summary["status"] == "corrupted"]
    document = {"directory": str(directory), "ok": not corrupted, "checkpoints": summaries, "corrupted": corrupted}
    return (1 if corrupted else 0), document, report.render_verify(str(directory), summaries)


def _show(opts: argparse.Namespace, directory: Path) -> tuple[int, Any, str]:

    entry = jobview.select_entry(jobview.open_store(directory).entries(), opts.sequence)
    if entry is None:
        what = f"no checkpoint {opts.sequence}" if opts.sequence is not None else "no valid checkpoint"
        message = f"{directory}: {what}"
        return USAGE_ERROR, {"directory": str(directory), "error": message}, message
    events, _ = jobview.read_events(directory)
    detail = jobview.entry_detail(entry, events, reveal=opts.reveal_secrets)
    code = 1 if entry.checkpoint is None else 0
    return code, {"directory": str(directory), **detail}, report.render_show(detail)


def _events(opts: argparse.Namespace, directory: Path) -> tuple[int, Any, str]:

    events, skipped = jobview.read_events(directory)
    if opts.category:
        events = [event for event in events if event.category.value == opts.category.lower()]
    document: dict[str, Any] = {"directory": str(directory), "count": len(events), "skipped_lines": skipped}
    if opts.all:
        document["events"] = [jobview.mask_secrets(jobview.event_document(event)) for event in events]
        return 0, document, report.render_events(str(directory), document["events"], skipped)
    document["groups"] = jobview.group_events(events)
    return 0, document, report.render_groups(str(directory), document["groups"], skipped)


def _redis(opts: argparse.Namespace, prog: str) -> int:
    # Imported here: the redis client is an optional extra, needed by this subcommand only.
    import redis

    client = redis.Redis.from_url(opts.url)
    try:
        document = redisview.job_document(client, redisview.job_keys(opts.queue, opts.spider))
    except redis.exceptions.RedisError as exc:
        print(f"{prog}: error: {opts.url}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(json.dumps(document, indent=2, sort_keys=True) if opts.json else redisview.render(document))
    return 0


def _crawl(opts: argparse.Namespace, crawl_args: list[str]) -> int:

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [resilience supervisor] %(levelname)s: %(message)s")
    return supervisor.supervise(crawl_args, restart_delay=opts.restart_delay)


HANDLERS: dict[str, Callable[[argparse.Namespace, Path], tuple[int, Any, str]]] = {
    "list": _list, "show": _show, "verify": _verify, "events": _events,
}  # fmt: skip
