"""The README and the code cannot drift: every setting, stat, signal and close reason of the contract."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from scrapy_resilience import signals, stats
from scrapy_resilience.settings import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGE_SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "scrapy_resilience").rglob("*.py"))

CONTRACT_STATS = [
    "resilience/retry/scheduled",
    "resilience/retry/delay_seconds",
    "resilience/retry/permanent",
    "resilience/retry/gave_up",
    "resilience/failures/<category>",
    "resilience/checkpoint/count",
    "resilience/checkpoint/last_sequence",
    "resilience/resume/count",
    "resilience/resume/requests_restored",
    "resilience/browser/recycled",
    "resilience/resources/memory_mb_max",
    "resilience/abort/reason",
]
CONTRACT_SIGNALS = ["checkpoint_saved", "failure_recorded", "threshold_tripped", "browser_recycled", "abort_triggered"]
CLOSE_REASONS = [
    "resilience_failure_rate",
    "resilience_consecutive_crashes",
    "resilience_memory_exceeded",
    "resilience_cpu_exceeded",
    "resilience_disk_space",
    "resilience_network_connections",
]
# Defaults that a table shows in words rather than as a literal.
WORDED_DEFAULTS = {
    "RESILIENCE_CHECKPOINT_DIR": "unset",
    "RESILIENCE_JOB_ID": "the spider's name",
    "RESILIENCE_NOTIFY_URL": "unset",
    "RESILIENCE_TRANSIENT_PATTERNS": "built-in list",
    "RESILIENCE_PERMANENT_PATTERNS": "built-in list",
}


def _setting_rows() -> dict[str, list[list[str]]]:
    rows: dict[str, list[list[str]]] = {}
    for line in README.splitlines():
        match = re.match(r"\|\s*`(RESILIENCE_[A-Z_]+)`\s*\|", line)
        if match:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.setdefault(match.group(1), []).append(cells)
    return rows


def _stat_values() -> set[str]:
    return {value for value in vars(stats).values() if isinstance(value, str) and value.startswith("resilience/")}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_setting_has_a_readme_row_with_its_default(name):
    """Each setting has a README table row (setting, type, default, meaning) whose default is the code's."""
    rows = _setting_rows().get(name)
    assert rows, f"{name} has no row in a README settings table"
    for cells in rows:
        assert len(cells) == 4, f"{name}: a settings row has 4 cells: setting, type, default, meaning"
        default = cells[2]
        if name in WORDED_DEFAULTS:
            assert WORDED_DEFAULTS[name] in default
            continue
        literal = re.search(r"`([^`]*)`", default)
        assert literal, f"{name}: the default cell shows the value in backticks"
        assert ast.literal_eval(literal.group(1)) == DEFAULTS[name]


def test_readme_documents_no_unknown_setting():
    """The README names no RESILIENCE_* setting that the code does not know."""
    named = set(re.findall(r"\bRESILIENCE_[A-Z_]+[A-Z]\b", README))
    assert named <= set(DEFAULTS)


@pytest.mark.parametrize("key", CONTRACT_STATS)
def test_contract_stats_are_documented_and_defined(key):
    """Every stat of the contract is in the README and in stats.py."""
    assert key in README
    if "<category>" in key:
        assert stats.failures("network") == "resilience/failures/network"
    else:
        assert key in _stat_values()


def test_every_stat_in_code_is_documented():
    """Every stat name stats.py defines appears in the README."""
    missing = sorted(key for key in _stat_values() if key not in README)
    assert not missing


@pytest.mark.parametrize("name", CONTRACT_SIGNALS)
def test_contract_signals_exist_and_are_documented(name):
    """Every public signal exists in scrapy_resilience.signals and is in the README."""
    assert isinstance(getattr(signals, name), object)
    assert f"`{name}`" in README


@pytest.mark.parametrize("reason", CLOSE_REASONS)
def test_close_reasons_are_used_and_documented(reason):
    """Every close reason of the contract is produced by the code and documented."""
    assert f'"{reason}"' in PACKAGE_SOURCE
    assert f"`{reason}`" in README


def test_readme_has_the_two_setup_commands():
    """The README's set-up is exactly `make demo` and `make test`."""
    assert "make demo" in README and "make test" in README
