"""``scrapy resilience <subcommand> ...``: the Scrapy face of ``scrapy_resilience.cli.parser``.

Registered through the ``scrapy.commands`` entry point, so every project that
installed the package has it (and it works outside a project too). Scrapy's
own option parser is bypassed: it would consume ``-s``, ``--logfile`` and the
other global options that ``resilience crawl`` must pass to the child
unchanged, so the whole argument list goes to the one parser in ``cli``.

This module is imported by Scrapy for every command of every such project:
it imports nothing heavy, and ``cli`` loads the rest only when used.
"""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError


class ResilienceCommand(ScrapyCommand):
    requires_project = False
    requires_crawler_process = False

    def syntax(self) -> str:
        return "{list,show,verify,events} DIR [options] | redis URL --spider NAME | crawl SPIDER [scrapy crawl options]"

    def short_desc(self) -> str:
        return "Inspect checkpoints and failure events; run a crawl under a supervisor"

    def long_desc(self) -> str:
        return (
            "Inspect the checkpoints and failure events of a job directory, or run a crawl under a supervisor "
            "that restarts and resumes it. Run `scrapy resilience SUBCOMMAND -h` for the options of each."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        # Everything from the subcommand on, options included, is ours (see the module docstring).
        parser.add_argument("resilience_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.set_defaults(profile=None)  # read by scrapy.cmdline before run()

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:  # options before the subcommand, which Scrapy's parser could not place
            raise UsageError("give the subcommand first, e.g. `scrapy resilience list DIR --json`")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        # Here, not at the top: Scrapy imports this module for every command of every project (start-up time).
        from scrapy_resilience.cli.parser import main

        self.exitcode = main(list(opts.resilience_args), prog="scrapy resilience")
