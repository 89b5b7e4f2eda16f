"""`heads bench soak`: the report's arithmetic on made-up samples, and a tiny soak of the launched app (2 clients ×
3 jobs) whose report has every field and no failure: good photos animated, bad uploads refused in one sentence."""

from __future__ import annotations

import json
import re
import sys

import pytest

from demo.memory import release_free_memory, share_arenas
from heads.cli import parse
from heads.soak import MIX, SoakConfig, growth, percentiles, soak


def test_growth_is_measured_between_the_idle_samples():
    samples = [{"jobs": 0, "idle": True, "rss_mb": 280.0}, {"jobs": 10, "idle": False, "rss_mb": 900.0},
               {"jobs": 48, "idle": True, "rss_mb": 700.0}, {"jobs": 90, "idle": False, "rss_mb": 990.0},
               {"jobs": 100, "idle": True, "rss_mb": 730.5}]
    assert growth(samples) == {"over_jobs": 52, "mb": 30.5}  # not from the cold start, nor from busy samples
    assert growth([{"jobs": 0, "idle": True, "rss_mb": None}]) == {"over_jobs": None, "mb": None}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}
    assert percentiles([1.0, 2.0, 3.0])["p50"] == 2.0


def test_the_server_can_hand_memory_back():
    """On glibc (Linux, where the app runs on Spaces) both of the app's memory settings take effect."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert share_arenas() and release_free_memory()


def test_the_mix_and_the_command():
    refusals = [kind for kind in MIX if kind.refusal]
    assert 3 <= len(refusals) < len(MIX) and any(not kind.cut for kind in MIX)
    assert {kind.name for kind in MIX[:6]} >= {"photo", "animal", "text as video", "long clip"}  # the tiny soak's
    _, config, _ = parse(["bench", "soak", "--clients", "2", "--jobs", "3"])
    assert isinstance(config, SoakConfig) and config.clients == 2


@pytest.mark.slow
@pytest.mark.media
def test_a_tiny_soak_of_the_launched_app(media, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the app's process inherits it
    out = tmp_path / "soak.json"
    report = soak(SoakConfig(out=out, clients=2, jobs=3, max_frames=6, media=media, memory_every=2))
    assert json.loads(out.read_text()) == report and report["benchmark"] == "soak"
    results = report["results"]
    assert results["failures"] == 0 and not results["failed"], results["failed"]
    assert results["server_tracebacks"] == 0
    assert results["jobs"] == 6 and results["ok"] == 4 and results["refused_correctly"] == 2
    for refusal in results["refusals"]:
        assert not re.search(r"(^|\s)/\w", refusal), refusal  # one sentence, no server path in it
    for group in ("all", "ok", "refused"):
        assert set(results["latency_s"][group]) == {"p50", "p90", "p99", "max"}
        assert 0 < results["latency_s"][group]["p50"] <= results["latency_s"][group]["p99"]
    samples = results["memory"]
    assert [s["jobs"] for s in samples if not s["idle"]] == [2, 4, 6]
    assert [s["jobs"] for s in samples if s["idle"]] == [0, 3, 6]  # the start, after jobs 0-2, the end
    assert all(s["rss_mb"] > 50 and s["threads"] >= 1 and s["fds"] >= 1 and "temp_mb" in s for s in samples)
    assert results["rss_growth"]["over_jobs"] == 3 and isinstance(results["rss_growth"]["mb"], float)
    assert isinstance(results["target_met"], bool) and results["startup_s"] > 0
