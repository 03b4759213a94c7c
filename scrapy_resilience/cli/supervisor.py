"""The supervisor: ``scrapy resilience crawl SPIDER [scrapy crawl options]``.

It runs ``scrapy crawl`` as a child process (same Python, same working
directory and environment, every option passed through) with checkpoints on,
and starts it again, resuming from its newest checkpoint, whenever it dies or
closes for a resumable reason, so that a user without systemd or Kubernetes
gets a crawl that keeps itself alive. Its exit code tells the outcome
(Scrapy's own is 0 even for a spider closed by a fault):

- 0 finished: the child closed for any reason that is neither resumable nor an
  abort (``finished``, ``closespider_*``, a spider's own ``CloseSpider``);
- 1 failed to start: the child exited with a non-zero status (not a signal)
  and no checkpoint was written by any run of this supervisor, as for an
  unknown spider or an invalid setting; the supervisor also exits 1 without
  starting a child when the ``RESILIENCE_*`` settings it can see are invalid;
- 2 aborted by the abort policy (``ABORT_REASONS``);
- 3 crash loop: ``RESILIENCE_ABORT_CONSECUTIVE_CRASHES`` deaths in a row (3 when
  unset or 0) of runs that made no progress.

A *death* is a run killed by a signal, exiting non-zero, or closing for a
resumable reason (a leak that trips every run is a loop too). A run *makes
progress* when the job records more requests done (the newest checkpoint's
count plus the requests its journal marked done after it, so that a run
killed before its first checkpoint still counts), more items scraped or more
poison requests set aside than before the run (setting the poison aside is
the cure: it ends the streak of deaths the poison caused); a new checkpoint
that records no new work is not progress (a crawl that resumes and dies on
the same page writes one each time). A run that made progress ends the
series, even if it died (``jobdir/resume.streak_after``: the rule by which the
crawl itself counts the deaths that ``RESILIENCE_ABORT_CONSECUTIVE_CRASHES``
judges, so that under the supervisor a job that keeps dying ends as a crash
loop, not as an abort): a poison page that kills every run after some work
is set aside at its third death and the crawl goes on without it.
How a run ended is learnt from the final checkpoint's
``data.job_state["close_reason"]``, written at close.

SIGINT, SIGTERM and SIGHUP are forwarded once to the child (which runs in its
own session, so a Ctrl-C in the terminal reaches it once, through us, and
Scrapy stops gracefully); the supervisor then never restarts and exits with
the child's outcome: 0 if it had finished anyway, 2 if it aborted, else
128 + the signal number, as a shell reports a job stopped by that signal.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from scrapy_resilience import settings as resilience_settings
from scrapy_resilience.cli.jobview import JobSnapshot, read_snapshot
from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.jobdir.resume import streak_after

logger = logging.getLogger(__name__)

# Close reasons after which the job is restarted and resumes: the process ran
# out of a resource that a fresh process gets back. ``shutdown`` is Scrapy's
# reason for a SIGTERM/SIGINT: when the supervisor did not send it, someone
# else stopped the child (a container runtime, an admin's kill), so it resumes.
RESUMABLE_REASONS = frozenset(
    {"resilience_memory_exceeded", "resilience_cpu_exceeded", "resilience_network_connections", "shutdown"}
)
# Close reasons of the abort policy: starting again would meet the same dead
# site, the same crash or the same full disk.
ABORT_REASONS = frozenset({"resilience_failure_rate", "resilience_consecutive_crashes", "resilience_disk_space"})
DEFAULT_CRASH_LIMIT = 3
MAX_RESTART_DELAY = 60.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Outcome(enum.IntEnum):
    FINISHED = 0
    FAILED_TO_START = 1
    ABORTED = 2
    CRASH_LOOP = 3


@attrs.frozen(kw_only=True)
class CrawlPlan:
    """What the supervisor runs: the child's command line and where its checkpoints go."""

    spider: str | None
    command: list[str]
    directory: Path
    job_id: str | None
    crash_limit: int
    addon_enabled: bool


def plan_crawl(crawl_args: list[str]) -> CrawlPlan:
    """Resolve the settings the child will see and build its command line.

    ``crawl_args`` are ``scrapy crawl`` arguments, parsed here with Scrapy's own
    crawl command so that every option means what it means to Scrapy. Settings
    are those of the project in the working directory, the spider's
    ``custom_settings`` and ``-s`` options, in Scrapy's priority order. Raises
    ``ConfigError`` for an invalid ``RESILIENCE_*`` value.
    """
    from scrapy.cmdline import ScrapyArgumentParser
    from scrapy.commands.crawl import Command as CrawlCommand
    from scrapy.utils.conf import arglist_to_dict
    from scrapy.utils.project import get_project_settings

    settings = get_project_settings()
    crawl = CrawlCommand()
    crawl.settings = settings
    parser = ScrapyArgumentParser(add_help=False)
    crawl.add_options(parser)
    opts, positional = parser.parse_known_args(crawl_args)
    spider = positional[0] if len(positional) == 1 else None
    try:
        settings.setdict(arglist_to_dict(opts.set), priority="cmdline")
    except ValueError:
        spider = None  # a malformed -s: the child says so and exits non-zero
    if spider is not None:
        _apply_spider_settings(settings, spider)
    resilience_settings.validate_all(settings)
    directory = resilience_settings.read(settings, "RESILIENCE_CHECKPOINT_DIR")
    extra: list[str] = []
    if directory is None:
        directory = str(Path("crawls") / (spider or "default"))
        extra = ["-s", "RESILIENCE_CHECKPOINT_DIR=" + directory]
    limit = resilience_settings.read(settings, "RESILIENCE_ABORT_CONSECUTIVE_CRASHES") or DEFAULT_CRASH_LIMIT
    return CrawlPlan(
        spider=spider,
        command=[sys.executable, "-m", "scrapy", "crawl", *crawl_args, *extra],
        directory=Path(directory),
        job_id=resilience_settings.read(settings, "RESILIENCE_JOB_ID") or spider,
        crash_limit=limit,
        addon_enabled=_addon_enabled(settings),
    )


def _addon_enabled(settings: Any) -> bool:
    """Whether the project enables our add-on or checkpoint extension (else nothing is ever checkpointed)."""
    from scrapy.utils.python import global_object_name

    for name in ("ADDONS", "EXTENSIONS"):
        for component, order in settings.getdict(name).items():
            path = component if isinstance(component, str) else global_object_name(component)
            if path.startswith("scrapy_resilience.") and order is not None:
                return True
    return False


def _apply_spider_settings(settings: Any, spider: str) -> None:
    """Add the spider's ``custom_settings``, which may set the checkpoint directory."""
    from scrapy.spiderloader import get_spider_loader

    try:
        spidercls = get_spider_loader(settings).load(spider)
    except Exception as exc:
        logger.debug("Cannot load spider %r in the supervisor: %s", spider, exc)
        return
    spidercls.update_settings(settings)


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exited with status 3``, for the restart log."""
    if returncode < 0:
        try:
            return "killed by " + signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@attrs.define
class Supervisor:
    """Runs one crawl job to its outcome; ``run()`` returns the exit code."""

    plan: CrawlPlan
    restart_delay: float = 1.0
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False)
    _signal: int | None = attrs.field(default=None, init=False)
    _child: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)

    def run(self) -> int:
        previous = self._install_handlers()
        try:
            return int(self._loop())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self) -> int:
        before = self._snapshot()
        ever_checkpointed = False
        deaths = 0  # in a row, without progress in between
        run = 1
        while True:
            returncode = self._run_child(run)
            after = self._snapshot()
            new_checkpoint = after.sequence > before.sequence
            ever_checkpointed = ever_checkpointed or new_checkpoint
            reason = after.close_reason if new_checkpoint else None
            if self._signal is not None:
                return self._interrupted(reason)
            if returncode == 0 and reason in ABORT_REASONS:
                logger.error("Crawl aborted by the abort policy (%s); not restarting", reason)
                return Outcome.ABORTED
            if returncode == 0 and reason not in RESUMABLE_REASONS:
                if reason is None:
                    logger.warning("The crawl exited 0 without a final checkpoint; taking it as finished")
                else:
                    logger.info("Crawl finished (%s) after %d run(s)", reason, run)
                return Outcome.FINISHED
            if returncode > 0 and not ever_checkpointed:
                logger.error("The crawl failed to start (%s, no checkpoint written)", describe_exit(returncode))
                return Outcome.FAILED_TO_START
            why = describe_exit(returncode) if returncode != 0 else "closed with " + str(reason)
            deaths = streak_after(deaths, after.progress_since(before))
            if deaths >= self.plan.crash_limit:
                logger.error("Crash loop: %d deaths in a row without progress (last: %s); giving up", deaths, why)
                return Outcome.CRASH_LOOP
            # Backoff grows while nothing moves: a crash at start-up should not spin.
            delay = min(self.restart_delay * 2 ** max(deaths - 1, 0), MAX_RESTART_DELAY)
            logger.warning(
                "Run %d %s; restarting in %g s from checkpoint %s (deaths in a row without progress: %d of %d)",
                run, why, delay, after.sequence or "none", deaths, self.plan.crash_limit,
            )  # fmt: skip
            if self._stop.wait(delay):
                return self._interrupted(None)
            before = after
            run += 1

    def _run_child(self, run: int) -> int:
        logger.info("Run %d: %s", run, " ".join(self.plan.command))
        # A session of its own: a Ctrl-C in the terminal reaches the child once,
        # forwarded by us, not twice (Scrapy takes a second SIGINT as "force stop").
        self._child = subprocess.Popen(self.plan.command, start_new_session=True)
        if self._signal is not None:  # a signal arrived while we were starting it
            self._child.send_signal(self._signal)
        try:
            return self._child.wait()
        finally:
            self._child = None

    def _snapshot(self) -> JobSnapshot:
        return read_snapshot(self.plan.directory, job_id=self.plan.job_id)

    def _interrupted(self, reason: str | None) -> int:
        assert self._signal is not None
        if reason in ABORT_REASONS:
            return Outcome.ABORTED
        if reason is not None and reason not in RESUMABLE_REASONS:
            return Outcome.FINISHED
        logger.warning("Stopped by %s; not restarting", signal.Signals(self._signal).name)
        return 128 + self._signal

    def _install_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._forward) for signum in FORWARDED_SIGNALS}

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            os.kill(child.pid, signum)


def supervise(crawl_args: list[str], *, restart_delay: float = 1.0) -> int:
    """Plan and run a supervised crawl; the exit code of ``scrapy resilience crawl``."""
    try:
        plan = plan_crawl(crawl_args)
    except ConfigError as exc:
        logger.error("%s", exc)
        return Outcome.FAILED_TO_START
    logger.info("Supervising %s: checkpoints in %s", plan.spider or "the crawl", plan.directory)
    if not plan.addon_enabled:
        logger.warning(
            'The add-on is not enabled (ADDONS = {"scrapy_resilience.Addon": 500}): no checkpoints are '
            "written, so every restart starts the crawl over"
        )
    return Supervisor(plan, restart_delay=restart_delay).run()
