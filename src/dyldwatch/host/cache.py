"""A bounded LRU cache of per-file results, keyed by the file's identity and version.

A file is the same file while its device, inode, size, mtime and ctime are unchanged; any write,
rename over, chmod or touch changes ctime, so a stale entry can't be served for a replaced file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Thread-safe LRU bounded by entry count and, when `max_weight` is set, by the total weight
    callers give their entries (rows, say): one file with thousands of load commands must not
    count as one entry when memory is what the bound is for."""

    def __init__(self, max_entries: int = 4096, max_weight: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_weight = max_weight
        self.weight = 0
        #: key -> (value, weight): one dict entry per cached item (tens of thousands of them)
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def peek(self, key: Hashable) -> V | None:
        """The value if cached, without counting a use (its place in the LRU order is kept): for
        re-checks that should not keep an entry alive. One dict read, atomic as it is."""
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: Hashable, value: V, weight: int = 1) -> None:
        if self.max_entries <= 0 or (self.max_weight is not None and weight > self.max_weight):
            return
        with self._lock:
            old = self._data.get(key)
            self.weight += weight - (old[1] if old is not None else 0)
            self._data[key] = (value, weight)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries or (self.max_weight is not None and self.weight > self.max_weight):
                _, (_, dropped) = self._data.popitem(last=False)
                self.weight -= dropped

    def get_or_compute(self, key: Hashable | None, compute: Callable[[], V]) -> V:
        if key is None:
            return compute()
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __iter__(self) -> Iterator[Hashable]:
        """The keys, oldest first (a snapshot)."""
        with self._lock:
            return iter(list(self._data))

    def values(self) -> list[V]:
        with self._lock:
            return [v for v, _ in self._data.values()]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.weight = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)
