"""Rate control: the finest global step j_g whose container fits a byte budget.

Coarser steps never cost more bits in expectation, so the -log2 p estimate (cheap, no coding)
is bisected for the smallest j_g that fits; exact coding then confirms it (the coder adds a
few bytes of termination per band beyond the estimate) and, if it does not fit, steps up one
at a time. If the estimate left room, the next finer step is tried exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

from device.errors import WildlinkError


class BudgetError(WildlinkError, ValueError):
    """Even the coarsest quantisation does not fit the byte budget.

    The encoder sets `result` to the coarsest coding it made (None if there is none).
    """

    result = None
    #: exact container bytes at the coarsest step, when known
    needed: int | None = None


def choose_step(
    estimate: Callable[[int], int],
    exact: Callable[[int], int],
    budget: int,
    max_step: int,
) -> int:
    """Smallest step in [0, max_step] with exact(step) <= budget.

    Args:
        estimate: step -> estimated container bytes (monotone non-increasing, roughly).
        exact: step -> exact container bytes (codes the image).
        budget: the largest allowed container size in bytes.
        max_step: the coarsest step allowed.
    """
    if budget <= 0:
        raise BudgetError(f"the byte budget must be positive, got {budget}")
    lo, hi = 0, max_step
    if estimate(hi) > budget:
        size = exact(hi)
        if size > budget:
            error = BudgetError(
                f"cannot fit the image in {budget} bytes: it needs at least {size} bytes "
                "(raise --budget or lower --size)"
            )
            error.needed = size
            raise error
        return hi
    while lo < hi:  # smallest step whose estimate fits
        mid = (lo + hi) // 2
        if estimate(mid) <= budget:
            hi = mid
        else:
            lo = mid + 1
    step = lo
    while exact(step) > budget:
        if step >= max_step:
            raise BudgetError(f"cannot fit the image in {budget} bytes")
        step += 1
    if step > 0 and step == lo and exact(step - 1) <= budget:
        step -= 1  # the estimate was pessimistic by a step
    return step
