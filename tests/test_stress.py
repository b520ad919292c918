"""A short run of bench.stress in the suite: the real daemon (a process) on the test sound card,
a CPU burner and a crowd of clients; and the invariant checker on its own, so that it is known
to catch what it looks for."""

from __future__ import annotations

import os

from bench.stress import Ledger, burner, stress

from soundcard import PulseNullSink


async def test_a_short_stress_run_breaks_no_invariant(sound_card: PulseNullSink) -> None:
    report = await stress(seconds=10, burners=1, clients=4, quiet=True)
    assert report.ok, "\n".join(report.lines())
    # ... and it did exercise the daemon
    assert sum(report.commands.values()) >= 40, report.commands
    assert report.ledger.ended["finished"] >= 1 and report.ledger.ended["cancelled"] >= 1


def test_the_ledger_catches_each_broken_invariant() -> None:
    def violations(*events: tuple[str, str]) -> list[str]:
        ledger = Ledger()
        for uid, kind in events:
            ledger.see({"event": kind, "id": uid})
        return ledger.violations

    good = violations(("a", "queued"), ("a", "started"), ("a", "finished"), ("b", "queued"))
    assert good == []
    assert violations(("a", "queued"), ("a", "started"), ("a", "started")) == [
        "a: started twice",
        "a: started while a speaks",
    ]
    assert violations(("a", "queued"), ("a", "cancelled"), ("a", "failed")) == [
        "a: failed after cancelled"
    ]
    assert violations(("a", "queued"), ("a", "finished")) == ["a: finished without started"]
    assert violations(
        ("a", "started"),
    ) == ["a: started before queued"]
    assert violations(("a", "queued"), ("b", "queued"), ("a", "started"), ("b", "started")) == [
        "b: started while a speaks"
    ]
    ledger = Ledger()
    ledger.see({"event": "queued", "id": "a"})
    assert ledger.unended() == ["a"]


def test_the_burner_and_a_cpu_heavy_test_are_batch_work(batch_priority: None) -> None:
    """Neither competes with the players at audio.nice (the workers' priority) as an equal."""
    assert os.getpriority(os.PRIO_PROCESS, 0) >= 0
    process = burner()
    try:
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == 0
    finally:
        process.kill()
        process.wait()
