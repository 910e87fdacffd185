"""The loop every controller runs: handle batches of watch events as they
come, and resync everything on a timer, whether events keep coming or not
(a write that lost a race is retried by the next resync, not by luck)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from podnet.api.errors import APIError
from podnet.store.store import Event, Store


def run(
    store: Store,
    stop: threading.Event,
    handle: Callable[[list[Event]], None],
    resync: Callable[[], None],
    every: float,
    log: logging.Logger,
) -> None:
    rv = store.resource_version
    resync()
    last = time.monotonic()
    while not stop.is_set():
        left = max(0.05, every - (time.monotonic() - last))
        try:
            events = store.events_since(rv, timeout=left)
        except APIError:  # history expired: start over from now
            rv = store.resource_version
            events = []
            last = 0.0
        if events:
            rv = events[-1].rv
            try:
                handle(events)
            except Exception:
                log.exception("controller pass failed; a full resync follows")
                last = 0.0
        if time.monotonic() - last >= every and not stop.is_set():
            resync()
            last = time.monotonic()
