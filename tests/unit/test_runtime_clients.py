"""SharedAdmin: the one admin client of an assignment's restores (fresh ones started together were slow)."""

from __future__ import annotations

import threading
from typing import Any

from worker.runtime.clients import SharedAdmin


class CountingClients:
    def __init__(self) -> None:
        self.admins: list[object] = []

    def admin(self) -> Any:
        self.admins.append(object())
        return self.admins[-1]

    def consumer(self) -> Any:
        return "consumer"

    def producer(self) -> Any:
        return "producer"

    def reader(self, purpose: str) -> Any:
        return f"reader {purpose}"


def test_every_thread_gets_the_one_admin_client_until_a_failure_renews_it() -> None:
    clients = CountingClients()
    shared = SharedAdmin(clients)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(shared.admin())) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients.admins) == 1 and all(admin is clients.admins[0] for admin in seen)
    renewed = shared.renew_admin()
    assert renewed is clients.admins[1] and shared.admin() is renewed
    assert [shared.reader("restore"), shared.consumer(), shared.producer()] == ["reader restore", "consumer",
                                                                                "producer"]

