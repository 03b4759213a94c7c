"""The settings module: defaults, parsing of ``-s`` strings and every validation rule."""

from __future__ import annotations

import pytest
from scrapy.settings import Settings

from scrapy_resilience import settings as rs
from scrapy_resilience.exceptions import ConfigError
from scrapy_resilience.model.entities import AbortActionType

# (setting, accepted values at and inside the bounds, rejected values just outside them)
BOUNDS = [
    ("RESILIENCE_CHECKPOINT_INTERVAL", [1, 86400, "30"], [0.99, 86401, "soon"]),
    ("RESILIENCE_CHECKPOINT_RETENTION", [1, 500], [0, -1, 2.5]),
    ("RESILIENCE_EVENT_RETENTION", [1, 10**6], [0, "many"]),
    ("RESILIENCE_RETRY_MAX_ATTEMPTS", [1, 100, "8"], [0, 101, 1.5]),
    ("RESILIENCE_RETRY_BASE_DELAY", [0.1, 60], [0.09, 60.01]),
    ("RESILIENCE_RETRY_MULTIPLIER", [1.0, 10.0], [0.99, 10.01]),
    ("RESILIENCE_RETRY_MAX_DELAY", [0.1, 86400], [0.0, 86401]),
    ("RESILIENCE_RETRY_JITTER", [0.0, 1.0, "0.5"], [-0.01, 1.01, "abc"]),
    ("RESILIENCE_RETRY_AFTER_MAX", [0, 86400], [-1, 86401]),
    ("RESILIENCE_RETRY_HTTP_CODES", [[429], "500,503"], [[99], [600], "5xx"]),
    ("RESILIENCE_NON_RETRYABLE_HTTP_CODES", [[404], []], [[1000]]),
    ("RESILIENCE_TRANSIENT_PATTERNS", [["timeout"], []], [["("], ["[a-"]]),
    ("RESILIENCE_PERMANENT_PATTERNS", [["NXDOMAIN"]], [["*bad"]]),
    ("RESILIENCE_MONITOR_INTERVAL", [0.1, 3600], [0.09, 3601]),
    ("RESILIENCE_MEMORY_MB", [0, 1, 4096], [-1, "lots"]),
    ("RESILIENCE_MEMORY_PERCENT", [0, 1, 100], [0.5, 100.1, -1]),
    ("RESILIENCE_CPU_PERCENT", [0, 1, 100], [0.99, 101]),
    ("RESILIENCE_DISK_SPACE_MB", [0, 100], [-5]),
    ("RESILIENCE_NETWORK_CONNECTIONS", [0, 100], [-1]),
    ("RESILIENCE_BROWSER_LIFETIME", [0, 60, 86400], [59, 86401, 1]),
    ("RESILIENCE_ABORT_FAILURE_RATE", [0, 1, 100], [0.5, 100.5]),
    ("RESILIENCE_ABORT_WINDOW_SIZE", [1, 1000], [0]),
    ("RESILIENCE_ABORT_WINDOW_DURATION", [1, 3600], [0]),
    ("RESILIENCE_ABORT_MIN_OPERATIONS", [1, 20], [0]),
    ("RESILIENCE_ABORT_CONSECUTIVE_CRASHES", [0, 3], [-1]),
    ("RESILIENCE_ABORT_ACTIONS", [["shutdown"], "save_state,SHUTDOWN", []], [["explode"], "notify,reboot"]),
    ("RESILIENCE_NOTIFY_URL", ["http://127.0.0.1:1/hook", "https://example.invalid/x"], ["ftp://x/y", "not a url"]),
    ("RESILIENCE_ABORT_SHUTDOWN_TIMEOUT", [1, 600, "3", 86400], [0, 86401, 2.5, "never"]),
    ("RESILIENCE_REDIS_LEASE_TIMEOUT", [5, 30, "12.5", 3600], [4.9, 3601, 0, "soon"]),
    ("RESILIENCE_ENABLED", [True, "False", 0], ["maybe"]),
]


@pytest.mark.parametrize(("name", "good", "bad"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_bounds(name, good, bad):
    """Each setting accepts the values at its bounds and rejects those just outside, naming itself."""
    for value in good:
        rs.validate_all(Settings({name: value}))
    for value in bad:
        with pytest.raises(ConfigError) as info:
            rs.validate_all(Settings({name: value}))
        assert info.value.setting == name
        assert name in str(info.value) and repr(value) in str(info.value)
        assert info.value.allowed in str(info.value)


def test_every_setting_is_checked_by_a_bound_test():
    """No setting with a rule escapes the bound tests above."""
    free = {"RESILIENCE_CHECKPOINT_DIR", "RESILIENCE_JOB_ID", "RESILIENCE_RETRY_POLICIES"}
    bools = {name for name, spec in rs.SPECS.items() if spec.kind == "bool"}
    assert set(rs.SPECS) - free - bools <= {b[0] for b in BOUNDS}


def test_defaults_are_valid_and_match_the_contract():
    """The defaults validate and are the contract's values."""
    rs.validate_all(Settings())
    assert rs.DEFAULTS["RESILIENCE_CHECKPOINT_INTERVAL"] == 30
    assert rs.DEFAULTS["RESILIENCE_CHECKPOINT_RETENTION"] == 10
    assert rs.DEFAULTS["RESILIENCE_RETRY_MAX_ATTEMPTS"] == 8
    assert rs.DEFAULTS["RESILIENCE_RETRY_HTTP_CODES"] == [408, 429, 500, 502, 503, 504, 522, 524]
    assert rs.DEFAULTS["RESILIENCE_NON_RETRYABLE_HTTP_CODES"] == [400, 401, 403, 404, 405, 410, 451]
    assert rs.DEFAULTS["RESILIENCE_ABORT_ACTIONS"] == ["save_state", "log_event", "notify", "cleanup", "shutdown"]
    assert {a.value for a in AbortActionType} == set(rs.DEFAULTS["RESILIENCE_ABORT_ACTIONS"])


def test_unset_reads_default_and_command_line_strings_parse():
    """An unset setting reads its default; ``-s`` strings parse to the setting's type."""
    assert rs.read(Settings(), "RESILIENCE_RETRY_JITTER") == 0.5
    assert rs.read(Settings({"RESILIENCE_RETRY_HTTP_CODES": "429,503"}), "RESILIENCE_RETRY_HTTP_CODES") == [429, 503]
    assert rs.read(Settings({"RESILIENCE_CHECKPOINT_COMPRESS": "True"}), "RESILIENCE_CHECKPOINT_COMPRESS") is True
    assert rs.read(Settings({"RESILIENCE_CHECKPOINT_DIR": ""}), "RESILIENCE_CHECKPOINT_DIR") is None


def test_unknown_resilience_setting_is_refused():
    """A misspelt RESILIENCE_* setting stops the crawl instead of being ignored."""
    with pytest.raises(ConfigError, match="RESILIENCE_RETRY_MAX_ATEMPTS"):
        rs.validate_all(Settings({"RESILIENCE_RETRY_MAX_ATEMPTS": 3}))


def test_codes_cannot_be_both_retryable_and_permanent():
    """A status code listed as retryable and permanent is a configuration error."""
    with pytest.raises(ConfigError, match="RESILIENCE_NON_RETRYABLE_HTTP_CODES"):
        rs.validate_all(Settings({"RESILIENCE_RETRY_HTTP_CODES": [404, 503]}))


def test_policies_take_missing_fields_from_retry_settings():
    """A named policy's missing fields come from the RESILIENCE_RETRY_* settings."""
    settings = Settings(
        {
            "RESILIENCE_RETRY_POLICIES": '{"slow-api": {"max_attempts": 12, "base_delay": 5}}',
            "RESILIENCE_RETRY_MULTIPLIER": 3,
        }
    )
    assert rs.retry_policies(settings) == {
        "slow-api": {"max_attempts": 12, "base_delay": 5.0, "multiplier": 3.0, "max_delay": 60.0, "jitter_factor": 0.5}
    }


@pytest.mark.parametrize(
    ("policies", "where"),
    [
        ({"p": {"max_attempts": 0}}, "['p']['max_attempts']"),
        ({"p": {"max_attempts": 2.5}}, "['p']['max_attempts']"),
        ({"p": {"base_delay": 61}}, "['p']['base_delay']"),
        ({"p": {"multiplier": "x"}}, "['p']['multiplier']"),
        ({"p": {"jitter_factor": 1.5}}, "['p']['jitter_factor']"),
        ({"p": {"max_retries": 3}}, "['p']['max_retries']"),
        ({"p": 5}, "['p']"),
    ],
)
def test_bad_policies_name_the_field(policies, where):
    """An invalid policy names the policy and the field in the error."""
    with pytest.raises(ConfigError) as info:
        rs.validate_all(Settings({"RESILIENCE_RETRY_POLICIES": policies}))
    assert info.value.setting == "RESILIENCE_RETRY_POLICIES" + where


def test_config_objects():
    """The typed config objects carry the parsed values."""
    settings = Settings({"RESILIENCE_CHECKPOINT_DIR": "/tmp/x", "RESILIENCE_ABORT_ACTIONS": "LOG_EVENT,shutdown"})
    assert rs.CheckpointConfig.from_settings(settings).enabled
    assert not rs.CheckpointConfig.from_settings(Settings()).enabled
    assert rs.AbortConfig.from_settings(settings).actions == (AbortActionType.LOG_EVENT, AbortActionType.SHUTDOWN)
    assert not rs.RetryConfig.from_settings(Settings({"RESILIENCE_ENABLED": False})).enabled
    assert not rs.MonitorConfig.from_settings(Settings({"RESILIENCE_MONITOR_ENABLED": False})).enabled
