"""Where and how often a walk splits its ranges: a request budget, and folder boundaries.

Every split costs LIST requests beyond the pages a listing needs: the range cut short ends on a
partial page on each side, and a probe that splits nothing is a page thrown away. On a bucket of
10^9 keys that is noise; on one of 10^5 it decides whether n shards together list no more than
one task would. So a walk may spend a fixed share of the pages it has listed (`SplitBudget`), and
spends it where a split cannot miss: at the start of a folder the store has named
(`FolderBoundaries`), before it guesses a point inside a flat folder.
"""

from __future__ import annotations

import bisect
import threading

from migrate.discovery import FolderListing
from migrate.keyspace import Order, ordered, unordered
from migrate.listing import Lister

# Requests a walk may spend on splitting: RATIO of the pages listed so far, both sides together
# (costs as counted here; a cut's partial pages vary around their mean).
# No allowance up front: a shard of a few dozen pages would spend it all on its own cuts.
SPLIT_ALLOWANCE = 0.0
SPLIT_RATIO = 0.05
CUT_COST = 1  # a range cut short ends on a partial page on each side: half a page each
PROBE_COST = 1  # a probe's page, thrown away when it splits nothing
FOLDER_COST = 1  # one Delimiter listing


class SplitBudget:
    """LIST requests a walk may spend beyond the pages it needs (thread-safe)."""

    def __init__(self, allowance: float = SPLIT_ALLOWANCE, ratio: float = SPLIT_RATIO) -> None:
        self.allowance, self.ratio = allowance, ratio
        self.pages = 0
        self.spent = 0
        self._lock = threading.Lock()

    def listed(self, pages: int = 1) -> None:
        with self._lock:
            self.pages += pages

    def affords(self, cost: int) -> bool:
        with self._lock:
            return self._affords(cost)

    def spend(self, cost: int) -> bool:
        """Take `cost` if the budget has it; False (and nothing taken) if not."""
        with self._lock:
            if not self._affords(cost):
                return False
            self.spent += cost
            return True

    def refund(self, cost: int) -> None:
        with self._lock:
            self.spent -= cost

    def _affords(self, cost: int) -> bool:
        return self.spent + cost <= self.allowance + self.ratio * self.pages


class FolderBoundaries:
    """The starts of folders (in merge order), learned with one Delimiter listing per folder,
    on demand, from the root down toward where a range needs splitting. A folder's start is a
    split point that cannot miss: the folder holds keys, and nothing has to be probed to find
    the first of them."""

    def __init__(self, lister: Lister, order: Order, root: str) -> None:
        self._lister = lister if isinstance(lister, FolderListing) else None
        self.order = order
        self.root = root  # the walk's prefix: folders are listed below it only
        self._starts: list[str] = []  # merge-order folder names, sorted
        # Folders listed: to the end (None), or to this merge-order name (a page that went on).
        self._listed: dict[str, str | None] = {}
        self._busy: set[str] = set()  # being listed now
        self._lock = threading.Lock()

    def folders_of(self, key: str) -> list[str]:
        """The folders (raw, ending in "/") from the root down to the one holding `key` (raw)."""
        if not key.startswith(self.root):
            return []
        chain = [self.root]
        at = key.find("/", len(self.root))
        while at >= 0:
            chain.append(key[: at + 1])
            at = key.find("/", at + 1)
        return chain

    def innermost(self, key: str) -> str:
        """The deepest folder holding `key` (raw): where a projection of its names makes sense."""
        chain = self.folders_of(key)
        return chain[-1] if chain else self.root

    def between(self, low: str, high: str | None, budget: SplitBudget) -> str | None:
        """A folder start (raw) strictly between `low` and `high` (merge-order strings; None: no
        end), near the middle of those known; folders around `low` are listed as needed, each
        paid from `budget`. None when there is none, or no budget to look for one."""
        found = self._pick(low, high)
        if found is not None or self._lister is None:
            return found
        for folder in self.folders_of(unordered(low, self.order)):
            # Listed from its start, then, if that page ended below `low`, on from `low`.
            while True:
                wanted, after = self._to_list(folder, low)
                if not wanted:
                    break
                try:
                    if not budget.spend(FOLDER_COST):
                        return None
                    files, subfolders, more = self._lister.folders(folder, after)
                    names = [ordered(name, self.order) for name in files + subfolders]
                    with self._lock:
                        # A full page of files and no folder: a flat folder, not listed again
                        # (its splits are probes'); a page that ended among folders goes on.
                        self._listed[folder] = max(names) if more and subfolders else None
                    self._learn(subfolders)
                finally:
                    with self._lock:
                        self._busy.discard(folder)
                found = self._pick(low, high)
                if found is not None:
                    return found
        return None

    def _to_list(self, folder: str, low: str) -> tuple[bool, str | None]:
        """Whether `folder` is to be listed for a split above `low` (not if known past it, or
        being listed by another thread), and the StartAfter to list it from (raw)."""
        with self._lock:
            if folder in self._busy:
                return False, None
            listed_to = self._listed.get(folder, "")
            if listed_to is None or (listed_to and listed_to > low):
                return False, None
            self._busy.add(folder)
            return True, (unordered(low, self.order) if listed_to else None)

    def forget_below(self, key: str) -> None:
        """Drop the starts below `key` (merge order): every range has moved past them, and a
        bucket of 10^9 keys has millions of folders."""
        with self._lock:
            del self._starts[: bisect.bisect_left(self._starts, key)]

    def _learn(self, folders: list[str]) -> None:
        with self._lock:
            for folder in folders:
                name = ordered(folder, self.order)
                at = bisect.bisect_left(self._starts, name)
                if at == len(self._starts) or self._starts[at] != name:
                    self._starts.insert(at, name)

    def _pick(self, low: str, high: str | None) -> str | None:
        with self._lock:
            first = bisect.bisect_right(self._starts, low)
            last = len(self._starts) if high is None else bisect.bisect_left(self._starts, high)
            if first >= last:
                return None
            return unordered(self._starts[(first + last) // 2], self.order)
