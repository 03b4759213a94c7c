"""Debian's Chromium for the browser tests: the example project's launch options, kept in one place."""

from __future__ import annotations

import runpy
from pathlib import Path

_SETTINGS = runpy.run_path(str(Path(__file__).resolve().parent.parent / "example_project" / "shop" / "settings.py"))

LAUNCH_OPTIONS = _SETTINGS["PLAYWRIGHT_LAUNCH_OPTIONS"]
