"""``python -m scrapy_resilience <subcommand> ...``: the same command as ``scrapy resilience``."""

from __future__ import annotations

import sys

from scrapy_resilience.cli.parser import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
