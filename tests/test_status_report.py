"""The daemon's status is made of its parts' own (daemon.StatusReport), in the order the root
added them; a part added later (the MQTT bridge) shows from then on."""

from __future__ import annotations

from playspeak.daemon import StatusReport


def test_the_status_merges_each_parts_own_in_order() -> None:
    report = StatusReport()
    assert report() == {}
    clients = [1, 2]
    report.add(lambda: {"speaking": None, "volume": 80.0})
    report.add(lambda: {"clients": len(clients), "uptime": 1.5})
    assert list(report()) == ["speaking", "volume", "clients", "uptime"]
    clients.append(3)  # each call asks the parts again
    assert report()["clients"] == 3
    report.add(lambda: {"mqtt": {"connected": False}})
    assert report() == {
        "speaking": None,
        "volume": 80.0,
        "clients": 3,
        "uptime": 1.5,
        "mqtt": {"connected": False},
    }
