"""The stress suite's own checks: the record diff must see every kind of damage, the schedule is
seeded, and a hung librdkafka call is cut off."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dev.chaos import ChaosPlan
from dev.netproxy import NETWORK_ACTIONS, network_fault
from dev.verify import Outputs, diff
from worker.errors import KafkaCallsHung
from worker.runtime.kafka_errors import CallHung, Watchdog


def outputs(events: list[dict[str, object]], state: dict[str, object] | None = None) -> Outputs:
    return Outputs(events={"u1": events}, deltas={}, dlq=[("invalid_time", 0, 1, b"x")],
                   state=state or {"u1": {"a": 1}})


E1, E2, E3 = {"insert_id": "1"}, {"insert_id": "2"}, {"insert_id": "3"}


def test_identical_outputs_have_no_damage() -> None:
    assert diff(outputs([E1, E2]), outputs([E1, E2])) == (0, 0, 0)


def test_a_missing_record_is_lost() -> None:
    assert diff(outputs([E1, E2]), outputs([E1])) == (1, 0, 0)


def test_a_repeated_record_is_duplicated() -> None:
    assert diff(outputs([E1, E2]), outputs([E1, E2, E2])) == (0, 1, 0)


def test_an_unexpected_record_or_state_or_order_is_wrong() -> None:
    assert diff(outputs([E1, E2]), outputs([E1, E2, E3])) == (0, 0, 1)
    assert diff(outputs([E1, E2]), outputs([E2, E1])) == (0, 0, 2)
    assert diff(outputs([E1]), outputs([E1], state={"u1": {"a": 2}})) == (0, 0, 1)


def test_dlq_records_are_counted_too() -> None:
    expected, got = outputs([E1]), outputs([E1])
    got.dlq = []
    assert diff(expected, got) == (1, 0, 0)


def test_the_schedule_is_seeded_and_holds_every_fault() -> None:
    faults = {"kills": 3, "restore_kills": 2, "wipes": 1, "leaves": 1, "zombies": 1, "broker_sigterms": 1,
              "broker_sigkills": 1, "net_cuts_short": 2, "net_cuts_long": 1, "net_blackholes": 1, "net_latency": 1}
    plan = ChaosPlan(seed=3, duration_s=70, **faults)
    schedule = plan.schedule()
    assert schedule == ChaosPlan(seed=3, duration_s=70, **faults).schedule()
    assert plan.network_faults == 5
    assert sorted(action for _, action in schedule) == sorted(
        ["kill"] * 3 + ["restore-kill"] * 2 + ["wipe", "leave", "zombie", "broker-term", "broker-kill"]
        + ["net-cut-short"] * 2 + ["net-cut-long", "net-blackhole", "net-latency"])
    assert all(0 < at < 70 for at, _ in schedule)


def test_the_watchdog_returns_the_result_or_raises_the_error() -> None:
    assert Watchdog().call(1.0, "add", lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        Watchdog().call(1.0, "divide", lambda: 1 / 0)


def test_the_watchdog_cuts_off_a_call_that_hangs_and_keeps_at_most_its_limit_blocked() -> None:
    release = threading.Event()
    counted: list[str] = []
    watchdog = Watchdog(limit=2, on_abandoned=counted.append)
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(CallHung, match="stuck did not return within"):
            watchdog.call(0.1, "stuck", release.wait)
    assert time.monotonic() - started < 5 and watchdog.blocked() == 2
    with pytest.raises(KafkaCallsHung, match="3 abandoned librdkafka calls are blocked") as error:
        watchdog.call(0.1, "stuck", release.wait)
    assert error.value.exit_status == 4 and counted == ["stuck"] * 3
    release.set()  # the calls return at last: their threads, and what they held, are gone
    for _ in range(50):
        if watchdog.blocked() == 0:
            break
        time.sleep(0.02)
    assert watchdog.blocked() == 0


@pytest.mark.parametrize("action", NETWORK_ACTIONS)
def test_network_faults_last_about_a_session_timeout_or_as_their_name_says(action: str) -> None:
    class Proxy:
        def __init__(self) -> None:
            self.calls: list[tuple[str, float]] = []

        def cut(self, seconds: float) -> None:
            self.calls.append(("cut", seconds))

        def blackhole(self, seconds: float) -> None:
            self.calls.append(("blackhole", seconds))

        def set_latency(self, seconds: float) -> None:
            self.calls.append(("latency", seconds))

    proxy = Proxy()
    what, seconds = network_fault(proxy, action, random.Random(1), session_s=6.0)  # type: ignore[arg-type]
    assert what and len(proxy.calls) == 1
    if action == "net-cut-short":
        assert proxy.calls == [("cut", seconds)] and seconds < 6.0
    elif action == "net-cut-long":
        assert proxy.calls == [("cut", seconds)] and seconds > 6.0
    elif action == "net-blackhole":
        assert proxy.calls == [("blackhole", seconds)]
    else:
        assert proxy.calls[0][0] == "latency" and 0.05 <= proxy.calls[0][1] <= 0.3 and 5 <= seconds <= 10
