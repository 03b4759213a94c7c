"""Sphinx configuration: Markdown pages (MyST), the built-in alabaster theme, nothing fetched."""

from __future__ import annotations

import re
from pathlib import Path

# Read the version from the source rather than importing the package, so the
# docs build needs neither Scrapy nor an installed package.
_INIT = (Path(__file__).resolve().parent.parent / "scrapy_resilience" / "__init__.py").read_text(encoding="utf-8")

project = "scrapy-resilience"
author = "scrapy-resilience contributors"
release = version = re.findall(r'^__version__ = "([^"]+)"', _INIT, re.MULTILINE)[0]

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
# Headings up to level 3 get anchors, so pages link to a section with file.md#heading.
myst_heading_anchors = 3

html_theme = "alabaster"
html_theme_options = {"description": "Scrapy crawls that survive crashes, outages, leaks and dead sites"}
html_static_path: list[str] = []
