"""Rate control: the finest global step j_g whose container fits a byte budget.

A variable-rate bundle has K rate levels besides the step; `RateLadder` puts every
(level, step) on one line of "global steps" t, so the searches below, and the two-part
encoder's, run unchanged over t. For a one-rate bundle t is the step itself.

Coarser steps never cost more bits in expectation, so the -log2 p estimate (cheap, no coding)
is bisected for the smallest j_g that fits; exact coding then confirms it (the coder adds a
few bytes of termination per band beyond the estimate) and, if it does not fit, steps up one
at a time. If the estimate left room, the next finer step is tried exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from device.errors import WildlinkError


@dataclass(frozen=True)
class RateLadder:
    """Every rate point of a bundle in one order, finest first: t -> (level, step).

    Level q sits at t = offsets[q], the mean of its channel steps (scale-table steps) minus
    the reference level's, so t = 0 is the reference level at step 0 and t keeps the meaning
    of a one-rate model's step: about exp(t d) coarser than the reference. t maps to the
    coarsest level whose own point is not coarser than t, at step t - offsets[level] >= 0
    (a level's decoder was trained for its own step, so a level is left as soon as the next
    finer one is reached); below the finest level's point the steps turn negative.

    Example:
        >>> ladder = RateLadder((5, 2, 0, -3), top=63)
        >>> ladder.rung(-4), ladder.rung(1), ladder.rung(6)
        ((3, -1), (2, 1), (0, 1))
    """

    offsets: tuple[int, ...]  # per level, level 0 the coarsest; offsets[reference] == 0
    top: int  # the coarsest step of any level (the scale table's last index)

    @classmethod
    def of(cls, tables) -> RateLadder:
        """The ladder of a bundle's `CodingTables`."""
        top = int(tables.scale_count - 1)
        if tables.level_steps is None:
            return cls((0,), top)
        mean = np.asarray(tables.level_steps, np.float64).mean(axis=1)
        ref = mean[tables.reference_level]
        return cls(tuple(int(round(m - ref)) for m in mean), top)

    @property
    def finest(self) -> int:
        """t of the finest level at step 0."""
        return min(self.offsets)

    @property
    def coarsest(self) -> int:
        """t of the coarsest level at its coarsest step."""
        return self.offsets[0] + self.top

    def rung(self, t: int) -> tuple[int, int]:
        """(level, step) at t: the coarsest level whose own point is not coarser than t (below
        the finest point, the finest level at a negative step).

        Levels whose points tie (equal offsets, so (q, s) and (q', s) give the same t) go to
        the finer one, the higher level number, above and below the finest point alike: a
        level is left as soon as the next finer one is reached (see the class), so as t falls
        the level never goes back to a coarser one.
        """
        t = int(t)
        return max(
            ((q, t - o) for q, o in enumerate(self.offsets) if o <= max(t, self.finest)),
            key=lambda rung: (self.offsets[rung[0]], rung[0]),
        )

    def at(self, level: int) -> int:
        """t of `level` at step 0."""
        return self.offsets[level]


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
    min_step: int = 0,
) -> int:
    """Smallest step in [min_step, max_step] with exact(step) <= budget.

    Args:
        estimate: step -> estimated container bytes (monotone non-increasing, roughly).
        exact: step -> exact container bytes (codes the image).
        budget: the largest allowed container size in bytes.
        max_step: the coarsest step allowed; min_step: the finest.
    """
    if budget <= 0:
        raise BudgetError(f"the byte budget must be positive, got {budget}")
    lo, hi = min_step, max_step
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
    if step > min_step and step == lo and exact(step - 1) <= budget:
        step -= 1  # the estimate was pessimistic by a step
    return step
