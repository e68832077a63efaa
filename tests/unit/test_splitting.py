"""The split budget and the folder boundaries a walk splits its ranges at."""

from __future__ import annotations

from typing import Any

import pytest

from migrate.keyspace import Order, ordered
from migrate.splitting import FOLDER_COST, FolderBoundaries, SplitBudget


class Folders:
    """A store that answers Delimiter listings of the keys given, and counts them."""

    side = "source"

    def __init__(self, keys: list[str], order: Order, page: int = 1000) -> None:
        self.keys = sorted(keys, key=lambda k: ordered(k, order))
        self.order, self.page = order, page
        self.requests = 0
        self.asked: list[str] = []

    def pages(self, prefix: str, start_after: str | None, max_keys: int = 1000) -> Any:
        raise AssertionError("a boundary is found without listing keys")

    def folders(self, prefix: str, start_after: str | None = None) -> tuple[list[str], list[str], bool]:
        self.requests += 1
        self.asked.append(prefix)
        entries: list[tuple[str, bool]] = []  # in the store's order, a folder once
        after = ordered(start_after, self.order) if start_after is not None else None
        for key in self.keys:
            if not key.startswith(prefix) or (after is not None and ordered(key, self.order) <= after):
                continue
            rest = key[len(prefix) :]
            if "/" not in rest:
                entries.append((key, False))
            elif (folder := prefix + rest[: rest.index("/") + 1]) != (entries[-1][0] if entries else None):
                entries.append((folder, True))
        page = entries[: self.page]
        files = [name for name, is_folder in page if not is_folder]
        return files, [name for name, is_folder in page if is_folder], len(entries) > self.page


KEYS = [
    f"{top}/{sub:02d}/{n}"
    for top in ("alpha", "beta", "gamma", "delta")
    for sub in range(6)
    for n in range(3)
]
KEYS += ["top-file", "flat/a", "flat/b"]


def test_the_budget_grows_with_the_pages_listed_and_spends_only_what_it_has() -> None:
    budget = SplitBudget(allowance=2, ratio=0.1)
    assert budget.spend(2)
    assert not budget.affords(1) and not budget.spend(1)
    assert budget.spent == 2  # a refused spend takes nothing
    budget.listed(10)
    assert budget.spend(1)
    assert not budget.spend(1)
    budget.refund(1)
    assert budget.spend(1)


def test_folders_of_a_key_run_from_the_walks_prefix_down() -> None:
    boundaries = FolderBoundaries(Folders(KEYS, Order.BYTE), Order.BYTE, "alpha/")
    assert boundaries.folders_of("alpha/03/1") == ["alpha/", "alpha/03/"]
    assert boundaries.folders_of("beta/03/1") == []  # outside the walk's prefix
    assert boundaries.innermost("alpha/03/1") == "alpha/03/"
    assert boundaries.innermost("alpha/x") == "alpha/"


@pytest.mark.parametrize("order", list(Order))
def test_a_boundary_lies_strictly_inside_the_range_and_costs_one_listing_per_folder(order: Order) -> None:
    store = Folders(KEYS, order)
    boundaries = FolderBoundaries(store, order, "")
    budget = SplitBudget(allowance=10, ratio=0)
    low = ordered("alpha/00/0", order)
    found = boundaries.between(low, None, budget)
    assert found is not None and found.endswith("/")
    assert ordered(found, order) > low
    assert store.asked == [""]  # the top level held boundaries: nothing deeper was listed
    high = ordered("beta/", order)
    inside = boundaries.between(low, high, budget)  # none at the top between alpha/ and beta/
    assert inside is not None and inside.startswith("alpha/")
    assert low < ordered(inside, order) < high
    assert store.asked == ["", "alpha/"]
    again = boundaries.between(low, high, budget)
    assert again == inside and store.requests == 2  # each folder listed once
    assert budget.spent == 2 * FOLDER_COST


def test_no_boundary_in_a_flat_folder_and_none_without_budget() -> None:
    store = Folders(KEYS, Order.BYTE)
    boundaries = FolderBoundaries(store, Order.BYTE, "")
    assert boundaries.between("flat/a", "flat/b", SplitBudget(allowance=0, ratio=0)) is None
    assert store.requests == 0  # no budget: no listing
    budget = SplitBudget(allowance=5, ratio=0)
    assert boundaries.between("flat/a", "flat/b", budget) is None
    assert store.asked == ["", "flat/"]


@pytest.mark.parametrize("order", list(Order))
def test_a_folder_whose_first_page_ends_below_the_range_is_listed_on_from_it(order: Order) -> None:
    keys = [f"logs/s{n:02d}/x" for n in range(30)]
    store = Folders(keys, order, page=10)
    boundaries = FolderBoundaries(store, order, "")
    budget = SplitBudget(allowance=10, ratio=0)
    low, high = ordered("logs/s25/x", order), ordered("logs/s29/", order)
    found = boundaries.between(low, high, budget)
    assert found in ("logs/s26/", "logs/s27/", "logs/s28/")
    assert store.asked == ["", "logs/", "logs/"]  # its first page ends at s09: on from s25
    assert boundaries.between(low, high, budget) == found and store.requests == 3


def test_a_flat_folder_is_listed_once_for_all() -> None:
    store = Folders([f"flat/{n:04d}" for n in range(50)], Order.BYTE, page=10)
    boundaries = FolderBoundaries(store, Order.BYTE, "")
    budget = SplitBudget(allowance=10, ratio=0)
    assert boundaries.between("flat/0020", None, budget) is None
    assert boundaries.between("flat/0040", None, budget) is None
    assert store.asked == ["", "flat/"]  # a page of files and no folder: flat, not listed again


def test_starts_every_range_has_passed_are_forgotten() -> None:
    store = Folders(KEYS, Order.BYTE)
    boundaries = FolderBoundaries(store, Order.BYTE, "")
    budget = SplitBudget(allowance=10, ratio=0)
    assert boundaries.between("alpha/", None, budget) is not None
    boundaries.forget_below("gamma/")
    none_left = SplitBudget(allowance=0, ratio=0)  # nothing is listed again
    assert boundaries.between("alpha/", "gamma/", none_left) is None  # nothing below gamma/ kept
    assert boundaries.between("alpha/", None, none_left) is not None


def test_a_listing_without_folders_gives_no_boundaries() -> None:
    class Inventory:
        side = "source"
        requests = 0

        def pages(self, prefix: str, start_after: str | None, max_keys: int = 1000) -> Any:
            return iter([])

    boundaries = FolderBoundaries(Inventory(), Order.BYTE, "")
    assert boundaries.between("a", None, SplitBudget(allowance=5)) is None
