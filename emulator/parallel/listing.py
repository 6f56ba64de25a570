"""Valid degrees for the one-line refusals of a parallel plan: the divisors of a size, listed up to a node."""

from __future__ import annotations

MAX_LISTED = 8  # valid degrees are listed up to one 8-GPU node


def divisors(n: int, upto: int = MAX_LISTED) -> list[int]:
    """Degrees above 1 that divide n, up to `upto`."""
    return [d for d in range(2, upto + 1) if n % d == 0]


def listed(values: list[int]) -> str:
    """'2, 4, 8', or 'none'."""
    return ", ".join(map(str, values)) or "none"
