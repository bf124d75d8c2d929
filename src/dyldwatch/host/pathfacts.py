"""Ownership and mode of a file and of every directory that leads to it (for writability rules).

Two chains matter for a library reached through symlinks: the directories of the path as named
(whoever can write one of them can swap the link) and those of the resolved path (whoever can
write one of them can swap the code). Both are collected, the file's own stat first, then the
resolved file's directories bottom-up, then the named path's directories not seen yet.
Symlinks themselves are skipped: their mode means nothing, their directory is what protects them.
"""

from __future__ import annotations

import os
import stat

from ..provenance import PathFact

DirMemo = dict[str, PathFact | None]


def _dir_fact(path: str, memo: DirMemo) -> PathFact | None:
    if path in memo:
        return memo[path]
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        fact = None
    else:
        fact = None if stat.S_ISLNK(st.st_mode) else PathFact(path, st.st_uid, st.st_gid, st.st_mode)
    memo[path] = fact
    return fact


def _parents(path: str) -> list[str]:
    out: list[str] = []
    current = os.path.dirname(path)
    while True:
        out.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            return out
        current = parent


def path_facts(path: str, real: str | None, st: os.stat_result | None, memo: DirMemo | None = None) -> list[PathFact]:
    """Facts for the file (from `st`, the stat of its target) and every directory above it.

    `memo` caches directory lstats across the files of one query (they share parents).
    """
    memo = {} if memo is None else memo
    facts: list[PathFact] = []
    seen: set[str] = set()
    if st is not None:
        target = real or path
        facts.append(PathFact(target, st.st_uid, st.st_gid, st.st_mode))
        seen.add(target)
    named = os.path.abspath(path)
    for chain in ((_parents(real) if real else []), _parents(named)):
        for d in chain:
            if d in seen:
                continue
            seen.add(d)
            fact = _dir_fact(d, memo)
            if fact is not None:
                facts.append(fact)
    return facts
