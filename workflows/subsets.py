"""Which of a customer's open invoices add up to a payment: a bounded subset-sum search.

Customers pay several invoices with one transfer and rarely say which. Exhaustive search is
exponential, and with many open invoices some combination will match any amount by chance,
so the search is bounded twice: by size (at most five invoices, smaller sizes first) and by
pool (the oldest `POOL_LIMITS[size]` invoices for three or more), with an operation budget.
`chance_of_coincidence` estimates how many matches luck alone would produce, which the engine
weighs against an exact sum.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

MAX_SUBSET_SIZE = 5
POOL_LIMITS = {3: 80, 4: 30, 5: 30}  # triples / fours / fives are built from the oldest n
# ... but rivals of a three-invoice answer are looked for among fours of the oldest 80 (from
# pairs of pairs: cheap enough once a triple was found), so that it can be told unique
RIVAL_LIMITS = {4: 80}
SUBSET_BUDGET = 60_000  # operations per search; beyond it the search reports "incomplete"

@dataclass(frozen=True)
class SubsetSearch:
    solutions: list[tuple[int, ...]]  # indexes into the values, ascending
    complete: bool  # every combination that could compete was looked at
    pools: dict[int, int]  # size -> how many values that size was searched over


def subsets_summing_to(values: Sequence[int], target: int, *, max_size: int = MAX_SUBSET_SIZE,
                       max_solutions: int = 4, budget: int = SUBSET_BUDGET,
                       pool_limits: dict[int, int] | None = None) -> SubsetSearch:
    """Combinations of at most `max_size` values that sum exactly to `target`.

    Meet in the middle by size: singles and pairs come from a hash of values (all of them),
    triples from pairs + a single, fours from pair + pair, fives from triple + pair, each over
    the first `pool_limits[size]` values (the caller passes the oldest first), so the cost is
    O(n^3) at worst instead of O(2^n), and `budget` caps it. Smaller combinations are searched
    first, and once a solution of size k is found only size k + 1 is searched for rivals (a
    customer paying three invoices is far likelier than one paying five that happen to add
    up to the same). `complete` says whether every size searched saw every value without
    running out of budget, so "one solution" really means "the only one"."""
    limits = {**POOL_LIMITS, **(pool_limits or {})}
    n_all = len(values)
    ops = 0
    found: list[tuple[int, ...]] = []
    pools: dict[int, int] = {}
    by_value: dict[int, list[int]] = defaultdict(list)
    for i, v in enumerate(values):
        by_value[v].append(i)
    pair_cache: dict[int, dict[int, list[tuple[int, int]]]] = {}

    def add(combo: tuple[int, ...]) -> bool:
        combo = tuple(sorted(combo))
        if len(set(combo)) == len(combo) and combo not in found:
            found.append(combo)
        return len(found) >= max_solutions

    def pair_index(n: int) -> dict[int, list[tuple[int, int]]]:
        nonlocal ops
        if n not in pair_cache:
            index: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for i, j in combinations(range(n), 2):
                index[values[i] + values[j]].append((i, j))
            pair_cache[n] = index
            ops += n * n // 2
        return pair_cache[n]

    def result(cut: bool) -> SubsetSearch:
        complete = not cut and all(p == n_all for p in pools.values())
        return SubsetSearch(found, complete, pools)

    first = 0  # size of the first solution; one size more is searched for rivals
    for size in range(1, min(max_size, n_all) + 1):
        if found and not first:
            first = size - 1
        if first and size > first + 1:
            return result(False)
        rivals = RIVAL_LIMITS.get(size, 0) if first and size == first + 1 else 0
        n = min(n_all, max(limits.get(size, n_all), rivals))
        pools[size] = n
        if size == 1:
            for i in by_value.get(target, []):
                if i < n and add((i,)):
                    return result(True)
        elif size == 2:
            for i in range(n):
                ops += 1
                for j in by_value.get(target - values[i], []):
                    if i < j < n and add((i, j)):
                        return result(True)
        elif size == 3:
            # (every pair i < j in order, as `combinations` gives them, one op each; written
            # out because this loop is most of the engine's time)
            get = by_value.get
            for i in range(n):
                rest = target - values[i]
                end = min(n, i + 1 + max(budget - ops, 0))
                for j in range(i + 1, end):
                    found_k = get(rest - values[j])
                    if found_k:
                        for k in found_k:
                            if j < k < n and add((i, j, k)):
                                return result(True)
                ops += end - i - 1
                if end < n and i + 1 < n:
                    return result(True)
        elif size == 4:
            index = pair_index(n)
            for s, plist in index.items():
                rest = index.get(target - s)
                if not rest:
                    continue
                for (i, j) in plist:
                    for (k, m) in rest:
                        ops += 1
                        if ops > budget:
                            return result(True)
                        if j < k and add((i, j, k, m)):
                            return result(True)
        else:
            index = pair_index(n)
            get = index.get
            for i in range(n):
                for j in range(i + 1, n):
                    rest = target - values[i] - values[j]
                    end = min(n, j + 1 + max(budget - ops, 0))
                    for k in range(j + 1, end):
                        pairs = get(rest - values[k])
                        if pairs:
                            for (m, q) in pairs:
                                if k < m and add((i, j, k, m, q)):
                                    return result(True)
                    ops += end - j - 1
                    if end < n and j + 1 < n:
                        return result(True)
    return result(False)


def chance_of_coincidence(pool: int, size: int, mean_minor: int, window: int = 1) -> float:
    """Expected number of `size`-invoice combinations out of `pool` open invoices whose sum
    lands within `window` minor units of a given amount by pure chance.

    Sums of `size` invoices spread over roughly 2.5 * sqrt(size) * mean; each combination
    hits a `window`-wide target with probability window / spread. With 20 open invoices of
    ~5,000.00, a given pair lands on the cent by chance about 0.01 % of the time, a given
    set of four about 0.3 %: small enough to trust when nothing else competes, and the
    weight shrinks as the pool grows."""
    if pool < size or mean_minor <= 0:
        return 0.0
    spread = 2.5 * math.sqrt(size) * mean_minor
    return math.comb(pool, size) * window / spread
