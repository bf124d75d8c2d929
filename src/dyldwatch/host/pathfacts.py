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

from ..formats.provenance import PathFact

#: Per-query memo: directory -> facts of it and every directory above it (siblings share parents).
DirMemo = dict[str, tuple[PathFact, ...]]


def dir_chain(directory: str, memo: DirMemo) -> tuple[PathFact, ...]:
    """Facts of `directory` and its ancestors up to /, bottom-up (symlinks and unreadable ones skipped)."""
    chain = memo.get(directory)
    if chain is not None:
        return chain
    parent = os.path.dirname(directory)
    above = dir_chain(parent, memo) if parent != directory else ()
    try:
        st = os.lstat(directory)
    except (OSError, ValueError):
        chain = above
    else:
        if stat.S_ISLNK(st.st_mode):
            chain = above
        else:
            chain = (PathFact(directory, st.st_uid, st.st_gid, st.st_mode), *above)
    memo[directory] = chain
    return chain


def path_facts(path: str, real: str | None, st: os.stat_result | None, memo: DirMemo | None = None) -> list[PathFact]:
    """Facts for the file (from `st`, the stat of its target) and every directory above it.

    `memo` caches directory chains across the files of one query.
    """
    memo = {} if memo is None else memo
    facts: list[PathFact] = []
    if st is not None:
        facts.append(PathFact(real or path, st.st_uid, st.st_gid, st.st_mode))
    named_dir = os.path.dirname(os.path.abspath(path))
    real_dir = os.path.dirname(real) if real else named_dir
    facts.extend(dir_chain(real_dir, memo))
    if named_dir != real_dir:
        seen = {f.path for f in facts}
        facts.extend(f for f in dir_chain(named_dir, memo) if f.path not in seen)
    return facts
