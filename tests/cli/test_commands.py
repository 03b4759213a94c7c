"""The inspection command: list, show, verify, events on real job directories written through the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scrapy_resilience.cli.jobview import message_pattern
from scrapy_resilience.cli.parser import main
from scrapy_resilience.events.log import EventLog
from scrapy_resilience.jobdir.store import CheckpointStore
from scrapy_resilience.model.entities import (
    CheckpointData,
    CheckpointMetadata,
    FailureCategory,
    FailureEvent,
    FailureSeverity,
    RecoveryAction,
)

REPO = Path(__file__).resolve().parents[2]
SECRETS = ("jar-secret-1", "storage-secret-2", "local-secret-3", "header-secret-4", "password-secret-5")


def _browser_state() -> dict:
    """Sessions as ``sessions.SessionsExtension`` keeps them: Scrapy cookie jars and Playwright contexts."""
    cookie = {"version": 0, "name": "session", "value": SECRETS[0], "port": None, "domain": "127.0.0.1",
              "path": "/", "secure": False, "expires": None, "discard": True, "rest": {"HttpOnly": None}}
    storage = {
        "cookies": [{"name": "sid", "value": SECRETS[1], "domain": "127.0.0.1", "path": "/", "httpOnly": True}],
        "origins": [{"origin": "http://127.0.0.1", "localStorage": [{"name": "token", "value": SECRETS[2]}]}],
    }
    kwargs = {"http_credentials": {"username": "me", "password": SECRETS[4]}}
    return {"sessions": {"cookiejars": [{"key": None, "cookies": [cookie]}],
                         "contexts": {"default": {"storage_state": storage, "kwargs": kwargs}}}}


def write_job(directory: Path, checkpoints: int = 3) -> CheckpointStore:
    """A job directory with ``checkpoints`` checkpoints (a sidecar each), network events and one poison request."""
    store = CheckpointStore(directory, job_id="books")
    for number in range(1, checkpoints + 1):
        ref = store.write_sidecar("pending", [b'{"url": "http://127.0.0.1/product/%d.html"}\n' % number])
        job_state = {
            "close_reason": "finished" if number == checkpoints else None,
            "runs": number,
            "crashes": number - 1,
            "clean_close": number == checkpoints,
            "stats": {"item_scraped_count": 7 * number},
        }
        store.commit(
            metadata=CheckpointMetadata(total_items=100, completed_items=10 * number, failed_items=number),
            data=CheckpointData(job_state=job_state, browser_state=_browser_state()),
            sidecars={"pending": ref},
        )
    log = EventLog(directory)
    for number in range(4):
        log.append(FailureEvent(
            severity=FailureSeverity.MEDIUM, category=FailureCategory.NETWORK, source="retry",
            message=f"DownloadTimeoutError: http://127.0.0.1/product/{number}.html took longer than {10 + number} s",
            recovery_action=RecoveryAction.RETRY,
        ))  # fmt: skip
    log.append(FailureEvent(
        severity=FailureSeverity.HIGH, category=FailureCategory.SYSTEM, source="checkpoint",
        message="request killed the crawl 3 times; set aside", recovery_action=RecoveryAction.MANUAL,
        context={"url": "http://127.0.0.1/poison.html", "headers": {"Cookie": ["session=" + SECRETS[3]]}},
    ))  # fmt: skip
    log.close()
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_job(tmp_path / "job")
    return tmp_path / "job"


def test_list_shows_status_sequence_progress_and_size(job, capsys):
    """`list` prints one row per checkpoint, newest first, with its progress counts."""
    code, out, _ = run(capsys, "list", str(job))
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["3", "2", "1"]
    assert rows[0][1] == "completed" and rows[0][3:7] == ["30", "70", "3", "21"]
    assert rows[0][-1] == "finished"


def test_list_json_parses(job, capsys):
    """`list --json` is one JSON document with the same facts."""
    code, out, _ = run(capsys, "list", str(job), "--json")
    document = json.loads(out)
    assert code == 0
    assert [c["sequence"] for c in document["checkpoints"]] == [3, 2, 1]
    assert document["checkpoints"][-1]["progress"] == {"completed": 10, "pending": 90, "failed": 1, "items": 7}
    assert all(c["size"] > 0 and c["status"] == "completed" for c in document["checkpoints"])


def test_verify_passes_on_a_sound_job(job, capsys):
    """`verify` exits 0 when every checkpoint checks out."""
    code, out, _ = run(capsys, "verify", str(job))
    assert code == 0 and "all 3 checkpoint(s) valid" in out


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]), "invalid json"),
        (lambda path: path.write_bytes(b""), "empty file"),
        (lambda path: path.write_bytes(path.read_bytes().replace(b'"completed_items": 20', b'"completed_items": 21')),
         "checksum"),
    ],
    ids=["truncated", "empty", "altered"],
)
def test_verify_names_the_corrupted_checkpoint_and_why(job, capsys, damage, why):
    """`verify` exits 1 and names each corrupted file with the reason, in the table and in JSON."""
    damage(job / "checkpoints" / "checkpoint-000002.json")
    code, out, _ = run(capsys, "verify", str(job))
    assert code == 1
    line = next(line for line in out.splitlines() if "checkpoint-000002.json" in line)
    assert why in line.lower()
    code, out, _ = run(capsys, "verify", str(job), "--json")
    document = json.loads(out)
    assert code == 1 and document["ok"] is False
    assert [c["file"] for c in document["corrupted"]] == ["checkpoint-000002.json"]


def test_verify_reports_an_altered_sidecar(job, capsys):
    """A sidecar whose bytes changed makes its checkpoint corrupted, and `verify` says which sidecar."""
    sidecar = next((job / "checkpoints").glob("sidecar-*"))
    sidecar.write_bytes(sidecar.read_bytes().replace(b"product", b"produkt"))
    code, out, _ = run(capsys, "verify", str(job))
    assert code == 1 and sidecar.name in out


def test_list_keeps_going_past_a_corrupted_checkpoint(job, capsys):
    """`list` shows a corrupted checkpoint with its reason and the valid ones around it."""
    (job / "checkpoints" / "checkpoint-000003.json").write_bytes(b"{not json")
    code, out, _ = run(capsys, "list", str(job))
    assert code == 0
    assert "corrupted" in out.splitlines()[2] and "completed" in out.splitlines()[3]


def test_show_defaults_to_the_checkpoint_a_resume_would_load(job, capsys):
    """`show` without SEQ shows the newest valid checkpoint: metadata, job state, sidecars, poison requests."""
    (job / "checkpoints" / "checkpoint-000003.json").write_bytes(b"")
    code, out, _ = run(capsys, "show", str(job))
    assert code == 0
    assert "Checkpoint 2 " in out and "clean_close" in out and "pending" in out
    assert "Poison requests set aside (manual intervention): 1" in out and "poison.html" in out


def test_show_masks_cookie_values_unless_revealed(job, capsys):
    """Cookie, storage and Cookie-header values are masked in text and JSON; --reveal-secrets shows them."""
    for argv in (["show", str(job)], ["show", str(job), "--json"], ["events", str(job), "--all", "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert not any(secret in out for secret in SECRETS), argv
    code, out, _ = run(capsys, "show", str(job), "--json")
    document = json.loads(out)
    jar_cookie = document["browser_state"]["sessions"]["cookiejars"][0]["cookies"][0]
    assert jar_cookie["name"] == "session" and jar_cookie["value"] == "***" and jar_cookie["domain"] == "127.0.0.1"
    assert document["poison_requests"][0]["context"]["headers"]["Cookie"] == ["session=***"]
    code, out, _ = run(capsys, "show", str(job), "1", "--reveal-secrets", "--json")
    assert all(secret in out for secret in SECRETS)
    code, out, _ = run(capsys, "show", str(job), "1", "--reveal-secrets")
    assert SECRETS[0] in out


def test_show_a_corrupted_checkpoint_exits_1_and_an_unknown_one_2(job, capsys):
    """`show SEQ` of a corrupted checkpoint says why and exits 1; a sequence that does not exist exits 2."""
    (job / "checkpoints" / "checkpoint-000001.json").write_bytes(b"[]")
    code, out, _ = run(capsys, "show", str(job), "1")
    assert code == 1 and "CORRUPTED" in out and "problem:" in out
    code, _, err = run(capsys, "show", str(job), "9")
    assert code == 2 and "no checkpoint 9" in err


def test_events_grouped_by_category_and_message_pattern(job, capsys):
    """`events` groups messages differing only in URLs and numbers, with counts; --all lists them one by one."""
    code, out, _ = run(capsys, "events", str(job), "--json")
    groups = json.loads(out)["groups"]
    assert code == 0
    assert [(g["category"], g["count"]) for g in groups] == [("network", 4), ("system", 1)]
    assert groups[0]["pattern"] == "DownloadTimeoutError: <url> took longer than <n> s"
    code, out, _ = run(capsys, "events", str(job), "--all")
    assert code == 0 and out.count("DownloadTimeoutError") == 4
    code, out, _ = run(capsys, "events", str(job), "--category", "system", "--json")
    assert json.loads(out)["count"] == 1


def test_events_skip_a_torn_last_line(job, capsys):
    """A line torn by a crash is skipped and counted, not fatal."""
    with open(job / "events.jsonl", "ab") as file:
        file.write(b'{"id": "torn')
    code, out, _ = run(capsys, "events", str(job), "--json")
    assert code == 0 and json.loads(out)["skipped_lines"] == 1 and json.loads(out)["count"] == 5


def test_message_pattern_normalizes_numbers_urls_and_ids():
    """URLs, UUIDs, hex ids and numbers become placeholders; words stay."""
    message = (
        "Request 12 to https://a.example/x?id=3 failed: fingerprint 9f86d081884c7d65 "
        "job 0b3e0a2c-95a8-4c4e-8b0b-2f1d3c4e5a6b in 1.5 s"
    )
    assert message_pattern(message) == "Request <n> to <url> failed: fingerprint <hex> job <id> in <n> s"
    assert message_pattern("deadline accepted") == "deadline accepted"


def test_empty_and_missing_directories(tmp_path, capsys):
    """An empty directory has no checkpoints (exit 0); a missing one is a clear error, exit 2."""
    code, out, _ = run(capsys, "list", str(tmp_path))
    assert code == 0 and "no checkpoints" in out
    code, out, _ = run(capsys, "verify", str(tmp_path))
    assert code == 0
    code, _, err = run(capsys, "list", str(tmp_path / "nope"))
    assert code == 2 and "no such directory" in err


def test_checkpoints_subdirectory_is_accepted(job, capsys):
    """Pointing at DIR/checkpoints works as well as at the job directory."""
    code, out, _ = run(capsys, "list", str(job / "checkpoints"), "--json")
    assert code == 0 and len(json.loads(out)["checkpoints"]) == 3


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("prefix", [["-m", "scrapy_resilience"], ["-m", "scrapy", "resilience"]],
                         ids=["python-m", "scrapy-command"])
def test_both_entry_points_in_real_processes(job, tmp_path, prefix):
    """`python -m scrapy_resilience` and `scrapy resilience` (entry point) run the same command, outside a project."""
    (job / "checkpoints" / "checkpoint-000002.json").write_bytes(b"\x00garbage")

    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *prefix, *argv], capture_output=True, text=True, cwd=tmp_path,
                              env=_child_env(), timeout=120)  # fmt: skip

    verify = call("verify", str(job), "--json")
    assert verify.returncode == 1, verify.stderr
    assert [c["sequence"] for c in json.loads(verify.stdout)["corrupted"]] == [2]
    listed = call("list", str(job))
    assert listed.returncode == 0 and "corrupted" in listed.stdout
    missing = call("show", str(tmp_path / "missing"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
