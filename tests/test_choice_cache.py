"""The precision decision is made once per machine: stored, read back, serialised across processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models import choice_cache
from models.choice_cache import cached_choice, default_cache_dir, entry_path, machine_key, writable_cache_dir
from models.precision import PrecisionChoice
from scripts.paths import REPO

KEY = machine_key("model_x:abc", 2, (16, 3, 128, 128), {"tolerance": 0.03})
CHOICE = PrecisionChoice("bf16", "measured", {"fp32": 0.2, "bf16": 0.1}, {"bf16": 0.01})


def test_the_first_call_decides_and_stores_the_next_reads_it_back(tmp_path: Path) -> None:
    decided, warmed = [], []
    first, path = cached_choice(KEY, lambda: decided.append(1) or CHOICE, warmed.append, tmp_path)
    second, again = cached_choice(KEY, lambda: pytest.fail("decided twice"), warmed.append, tmp_path)
    assert (first, decided, path, again) == (CHOICE, [1], entry_path(tmp_path, KEY), path)
    assert second.precision == "bf16" and second.reason == "cached: measured" and second.seconds == CHOICE.seconds
    assert [choice.precision for choice in warmed] == ["bf16", "bf16"]
    assert json.loads(path.read_text())["key"] == KEY


def test_another_machine_or_graph_gets_its_own_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached_choice(KEY, lambda: CHOICE, lambda _: None, tmp_path)
    other_graphs = machine_key("model_x:def", 2, (16, 3, 128, 128), {"tolerance": 0.03})
    monkeypatch.setattr(choice_cache, "cpu_name", lambda: "Another CPU")
    other_cpu = machine_key("model_x:abc", 2, (16, 3, 128, 128), {"tolerance": 0.03})
    fp32 = PrecisionChoice("fp32", "measured elsewhere")
    for key in (other_graphs, other_cpu):
        assert entry_path(tmp_path, key) != entry_path(tmp_path, KEY)
        assert cached_choice(key, lambda: fp32, lambda _: None, tmp_path)[0] == fp32


def test_a_corrupt_or_foreign_entry_is_decided_again(tmp_path: Path) -> None:
    path = entry_path(tmp_path, KEY)
    path.write_text("{not json")
    assert cached_choice(KEY, lambda: CHOICE, lambda _: None, tmp_path)[0] == CHOICE
    path.write_text(json.dumps({"key": {**KEY, "torch": "0.0"}, "choice": {"precision": "fp32", "reason": "old"}}))
    assert cached_choice(KEY, lambda: CHOICE, lambda _: None, tmp_path)[0] == CHOICE


def test_the_folder_comes_from_the_environment_else_the_user_cache(tmp_path: Path) -> None:
    assert default_cache_dir({"DENOISER_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/denoiser-server")
    assert default_cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/denoiser-server")
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert writable_cache_dir({"DENOISER_CACHE_DIR": str(blocked / "sub")}).name == f"denoiser-server-{os.getuid()}"


def worker(folder: str, log: str) -> None:
    """One process of the race test: decide slowly (0.3 s), warm up (0.2 s), record both intervals in ``log``."""

    def record(event: str, seconds: float) -> None:
        start = time.time()
        time.sleep(seconds)
        with open(log, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "event": event, "start": start, "end": time.time()}) + "\n")

    def decide() -> PrecisionChoice:
        record("decide", 0.3)
        return PrecisionChoice("bf16", f"decided by {os.getpid()}")

    choice, _ = cached_choice(KEY, decide, lambda _: record("warm-up", 0.2), Path(folder))
    print(choice.precision)


def test_workers_started_together_decide_once_one_at_a_time_as_one_alone(tmp_path: Path) -> None:
    alone_log, race_log = tmp_path / "alone.jsonl", tmp_path / "race.jsonl"
    (tmp_path / "alone").mkdir()
    (tmp_path / "race").mkdir()

    def start(folder: Path, log: Path) -> subprocess.Popen:
        code = f"from tests.test_choice_cache import worker; worker({str(folder)!r}, {str(log)!r})"
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)

    alone = start(tmp_path / "alone", alone_log).communicate()[0].strip()
    processes = [start(tmp_path / "race", race_log) for _ in range(3)]
    answers = [process.communicate()[0].strip() for process in processes]
    assert answers == [alone] * 3 == ["bf16"] * 3
    events = sorted((json.loads(line) for line in race_log.read_text().splitlines()), key=lambda e: e["start"])
    assert [e["event"] for e in events].count("decide") == 1
    assert len(events) == 4 and events[0]["event"] == "decide"
    for earlier, later in zip(events, events[1:]):
        assert later["start"] >= earlier["end"] - 0.01, "two processes measured or warmed up at the same time"
