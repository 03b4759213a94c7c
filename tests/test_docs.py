"""The docs and the code cannot drift: settings, stats, signals, close reasons, meta keys and import paths.

The reference pages of ``docs/reference/`` list every name the code defines,
and no page (the README included) names one the code does not know.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from scrapy_resilience import meta, signals, stats
from scrapy_resilience.cli.supervisor import ABORT_REASONS, RESUMABLE_REASONS
from scrapy_resilience.model import entities
from scrapy_resilience.model.entities import FailureCategory
from scrapy_resilience.monitor import judge
from scrapy_resilience.monitor.extension import CLOSE_REASONS as THRESHOLD_REASONS
from scrapy_resilience.settings import DEFAULTS, SPECS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scrapy_resilience"
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {
    path.relative_to(DOCS).as_posix(): path.read_text(encoding="utf-8")
    for path in sorted(DOCS.rglob("*.md"))
    if "_build" not in path.parts
}
EVERYTHING = "\n".join([README, *PAGES.values()])
SETTINGS_PAGE = PAGES["reference/settings.md"]
STATS_PAGE = PAGES["reference/stats.md"]
SIGNALS_PAGE = PAGES["reference/signals.md"]
CLOSE_REASONS_PAGE = PAGES["reference/close-reasons.md"]
META_PAGE = PAGES["reference/meta-keys.md"]

# The names of the public contract (shared/spec/interface.md): they must exist and be documented.
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
CONTRACT_CLOSE_REASONS = [
    "resilience_failure_rate",
    "resilience_consecutive_crashes",
    "resilience_memory_exceeded",
    "resilience_cpu_exceeded",
    "resilience_disk_space",
    "resilience_network_connections",
]
# Defaults that the settings table shows in words rather than as a literal.
WORDED_DEFAULTS = {
    "RESILIENCE_CHECKPOINT_DIR": "unset",
    "RESILIENCE_JOB_ID": "the spider's name",
    "RESILIENCE_NOTIFY_URL": "unset",
    "RESILIENCE_TRANSIENT_PATTERNS": "built-in list",
    "RESILIENCE_PERMANENT_PATTERNS": "built-in list",
}
# The type column of the settings table for each Spec.kind of settings.py.
DOCUMENTED_TYPES = {
    "bool": {"bool"},
    "int": {"int"},
    "float": {"float"},
    "str": {"str", "path"},
    "int_list": {"list"},
    "str_list": {"list"},
    "dict": {"dict"},
}


def table_rows(text: str, first_cell: str) -> dict[str, list[list[str]]]:
    """The rows of the Markdown tables of ``text`` whose first cell is a backticked name matching ``first_cell``."""
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        match = re.match(rf"\|\s*`({first_cell})`\s*\|", line)
        if match:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.setdefault(match.group(1), []).append(cells)
    return rows


# --- settings ---


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_setting_has_one_reference_row_with_its_type_and_default(name):
    """Each setting has one row (setting, type, default, meaning) whose type and default are the code's."""
    rows = table_rows(SETTINGS_PAGE, r"RESILIENCE_[A-Z_]+").get(name)
    assert rows, f"{name} has no row in docs/reference/settings.md"
    assert len(rows) == 1, f"{name} has {len(rows)} rows in docs/reference/settings.md"
    cells = rows[0]
    assert len(cells) == 4, f"{name}: a settings row has 4 cells: setting, type, default, meaning"
    assert cells[1] in DOCUMENTED_TYPES[SPECS[name].kind], f"{name}: type {cells[1]!r}, code {SPECS[name].kind!r}"
    default = cells[2]
    if name in WORDED_DEFAULTS:
        assert WORDED_DEFAULTS[name] in default
        return
    literal = re.search(r"`([^`]*)`", default)
    assert literal, f"{name}: the default cell shows the value in backticks"
    assert ast.literal_eval(literal.group(1)) == DEFAULTS[name]


def test_the_docs_name_no_unknown_setting():
    """No page (README included) names a RESILIENCE_* setting that the code does not know."""
    named = set(re.findall(r"\bRESILIENCE_[A-Z_]+[A-Z]\b", EVERYTHING))
    assert named - set(DEFAULTS) == set()


# --- stats ---


def code_stats() -> set[str]:
    return {value for value in vars(stats).values() if isinstance(value, str) and value.startswith("resilience/")}


def code_stat_templates() -> dict[str, str]:
    """Each stats function's key prefix, e.g. ``failures`` -> ``resilience/failures/``."""
    return {
        name: function("\0").split("\0")[0]
        for name, function in vars(stats).items()
        if callable(function) and getattr(function, "__module__", None) == stats.__name__
    }


def documented_stats(text: str) -> set[str]:
    return set(re.findall(r"`(resilience/[a-z_]+/[A-Za-z_<>/]+)`", text))


def test_every_stat_in_code_has_a_reference_row():
    """Every stat name and stat template of stats.py has a row in docs/reference/stats.md."""
    rows = table_rows(STATS_PAGE, r"resilience/[A-Za-z_<>/]+")
    assert code_stats() - set(rows) == set()
    for prefix in code_stat_templates().values():
        assert [row for row in rows if row.startswith(prefix) and "<" in row], f"no row for {prefix}<...>"


def stat_exists(key: str) -> bool:
    if key in code_stats():
        return True
    for prefix in code_stat_templates().values():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            known = {c.value for c in FailureCategory} | set(DEFAULTS) | {"<category>", "<SETTING>"}
            return rest in known
    return False


def test_every_stat_the_docs_name_exists():
    """Every resilience/ stat a page names is one stats.py defines (a template filled with a real value)."""
    unknown = sorted(key for key in documented_stats(EVERYTHING) if not stat_exists(key))
    assert not unknown


@pytest.mark.parametrize("key", CONTRACT_STATS)
def test_contract_stats_are_documented_and_defined(key):
    """Every stat of the contract is in the stats reference and in stats.py."""
    assert f"`{key}`" in STATS_PAGE
    assert stat_exists(key)
    assert stats.failures("network") == "resilience/failures/network"


# --- signals ---


def code_signals() -> set[str]:
    return {name for name, value in vars(signals).items() if type(value) is object}


def sent_arguments() -> dict[str, set[str]]:
    """For each signal, the keyword arguments the package sends it with (read from every send_catch_log call)."""
    sent: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("send_catch_log")
                and node.args
                and isinstance(node.args[0], ast.Attribute)
                and node.args[0].attr in code_signals()
            ):
                sent.setdefault(node.args[0].attr, set()).update(k.arg for k in node.keywords if k.arg)
    return sent


def test_every_signal_has_one_reference_row_and_no_row_is_unknown():
    """Each signal of signals.py has one row in docs/reference/signals.md, and each row is a signal."""
    rows = table_rows(SIGNALS_PAGE, r"[a-z_]+")
    assert set(rows) == code_signals()
    assert all(len(found) == 1 for found in rows.values())


@pytest.mark.parametrize("name", sorted(code_signals()))
def test_signal_arguments_are_those_the_code_sends(name):
    """The documented arguments of a signal are exactly those it is sent with."""
    cells = table_rows(SIGNALS_PAGE, re.escape(name))[name][0]
    documented = set(re.findall(r"`(\w+)`", cells[1]))
    assert documented == sent_arguments()[name]


@pytest.mark.parametrize("name", CONTRACT_SIGNALS)
def test_contract_signals_are_public(name):
    """Every signal of the contract is in the public table of the signals reference."""
    public = SIGNALS_PAGE.split("## Public signals", 1)[1].split("\n## ", 1)[0]
    assert name in table_rows(public, r"[a-z_]+")


# --- close reasons ---

CODE_CLOSE_REASONS = set(THRESHOLD_REASONS.values()) | {judge.REASON_FAILURE_RATE, judge.REASON_CONSECUTIVE_CRASHES}


def test_every_close_reason_has_one_row_and_no_row_is_unknown():
    """The close-reasons table lists exactly the reasons the monitor closes a crawl with, once each."""
    rows = table_rows(CLOSE_REASONS_PAGE, r"resilience_[a-z_]+")
    assert set(rows) == CODE_CLOSE_REASONS
    assert all(len(found) == 1 for found in rows.values())
    assert set(CONTRACT_CLOSE_REASONS) <= CODE_CLOSE_REASONS


@pytest.mark.parametrize("reason", sorted(CODE_CLOSE_REASONS))
def test_close_reason_rows_say_what_the_supervisor_does(reason):
    """The supervisor column of a close reason is what the supervisor's code does with it."""
    cells = table_rows(CLOSE_REASONS_PAGE, re.escape(reason))[reason][0]
    expected = "restarts" if reason in RESUMABLE_REASONS else "exits 2" if reason in ABORT_REASONS else None
    assert expected is not None, f"the supervisor does not classify {reason}"
    assert cells[-1] == expected


# --- request meta keys ---

PUBLIC_META_KEYS = {value for name, value in vars(meta).items() if name.endswith("_KEY") and not value.startswith("_")}


def test_every_meta_key_has_one_reference_row_and_no_row_is_unknown():
    """The meta-keys reference has one row per public key of meta.py, and no resilience_ row meta.py lacks."""
    rows = table_rows(META_PAGE, r"resilience_[a-z_]+")
    assert set(rows) == PUBLIC_META_KEYS
    assert all(len(found) == 1 for found in rows.values())


def test_every_resilience_name_the_docs_use_is_a_meta_key_or_a_close_reason():
    """Every lowercase resilience_* name a page uses is a meta key or a close reason of the code."""
    named = set(re.findall(r"(?<![\w/])resilience_[a-z_]+\b", EVERYTHING))
    assert named - PUBLIC_META_KEYS - CODE_CLOSE_REASONS == set()


# --- import paths ---


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the package, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def shown_import_paths() -> set[str]:
    """Every dotted scrapy_resilience path of the pages, and each name a ``from … import`` line takes from one."""
    paths = set(re.findall(r"\bscrapy_resilience(?:\.\w+)+", EVERYTHING))
    for module, names in re.findall(r"^from (scrapy_resilience[\w.]*) import ([\w, ]+)$", EVERYTHING, re.MULTILINE):
        paths |= {f"{module}.{name.strip()}" for name in names.split(",")}
    return paths


@pytest.mark.parametrize("dotted", sorted(shown_import_paths()))
def test_every_import_path_the_docs_show_exists(dotted):
    """Every scrapy_resilience.… path a page shows (settings.py paths, programmatic imports) resolves."""
    assert resolves(dotted), dotted


def test_every_entity_the_data_model_page_lists_exists():
    """Every class and enum the checkpoint-format page lists is in scrapy_resilience.model.entities."""
    section = PAGES["reference/checkpoint-format.md"].split("## The data model", 1)[1].split("Every validation rule")[0]
    listed = re.findall(r"`([A-Z]\w+)`", section)
    assert len(listed) >= 17
    assert [name for name in listed if not hasattr(entities, name)] == []


def test_every_source_file_the_docs_name_exists():
    """Every scrapy_resilience/….py file a page names exists."""
    named = set(re.findall(r"\bscrapy_resilience/[\w/]+\.py\b", EVERYTHING))
    assert named and all((ROOT / path).is_file() for path in named)


# --- the README ---


def slug(heading: str) -> str:
    """The anchor MyST (and GitHub) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_links_reach_existing_pages_and_sections():
    """Every relative link of the README names an existing file, and its #anchor a heading of that file."""
    links = re.findall(r"\]\(([^)#]+)(?:#([^)]+))?\)", README)
    assert links
    for target, anchor in links:
        if "://" in target:
            continue
        path = ROOT / target
        assert path.exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slug(heading) for heading in headings}, f"{target}#{anchor}"


def test_readme_is_short_and_has_the_two_setup_commands():
    """The README stays under 250 lines, and its set-up is exactly `make demo` and `make test`."""
    assert len(README.splitlines()) <= 250
    assert "make demo" in README and "make test" in README
