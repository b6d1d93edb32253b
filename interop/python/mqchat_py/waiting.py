"""Waiting for things that arrive on other threads: a log of items with a condition variable.

Tests and clients wait for an item matching a predicate, with a timeout, instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventLog(Generic[T]):
    """Items in arrival order; `wait_for` returns the first match, however early it arrived."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def snapshot(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def wait_for(self, match: Callable[[T], bool], timeout: float, what: str, start: int = 0) -> T:
        """The first item from index `start` on that matches; TimeoutError names `what`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            checked = start
            while True:
                for item in self._items[checked:]:
                    if match(item):
                        return item
                checked = max(checked, len(self._items))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {timeout} s; received: {self._items[start:]!r}")
                self._changed.wait(remaining)
