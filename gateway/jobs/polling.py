"""When to check a running vendor job: a schedule planned from the job times this vendor has shown.

Until a vendor has finished ``min_samples`` jobs the policy uses a fixed prior schedule (first check at
``first_fraction`` of ``expected``, then every ``interval``, backing off past 1.5× expected). After that
it plans the checks from the observed job times: a small dynamic program over a 0.5 s grid chooses the
check times that need the fewest status calls on average while the detection delay (finish → the check
that sees it) stays within ``target_median_delay`` at the median and ``target_p90_delay`` at p90 on the
learned distribution. Early checks are paid by every job and late ones only by late jobs, so the plan
waits long at first and checks densely where jobs actually end. Past the planned horizon (a job slower
than any seen) it backs off as the prior schedule does.

Observed job times are interval-censored: the job ended somewhere between the last check that saw it
running and the check that saw it done. ``observe(..., lower=)`` keeps an estimate inside that interval,
so the learned times are not biased late by the detection delay itself (which would push every later
plan later still).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["PollPolicy", "plan_checks"]

_GRID = 0.5
"""Resolution of planned check times for minute-long jobs (seconds); shorter jobs get a finer grid."""
_MAX_POINTS = 300
"""Most grid points a plan spans (a wider span gets a coarser grid)."""
_FIRST_CHECK_SHARE = 0.75
"""A job already done at its first check is learned at this share of that check's age."""
_RELATIVE = (0.1, 0.3)
"""For short jobs the delay targets shrink to these fractions of the median job time (median, p90)."""
_MAX_GAP = 30.0
"""Longest gap between two planned checks after the first (seconds)."""


@dataclass
class PollPolicy:
    """When to check a running job (seconds).

    ``expected``, ``first_fraction``, ``interval``, ``backoff`` and ``max_interval`` shape the prior
    schedule and the back-off past the planned horizon. ``max_wait`` bounds one job; a job still running
    then is treated as stuck. ``target_median_delay`` / ``target_p90_delay`` bound the planned schedule's
    detection delay on the learned job times (seconds); ``learn=False`` keeps the prior schedule.
    """

    expected: float = 60.0
    first_fraction: float = 0.75
    interval: float = 3.0
    backoff: float = 1.5
    max_interval: float = 15.0
    max_wait: float = 900.0
    min_interval: Mapping[str, float] | None = None
    """Per-vendor floor between checks, overriding each provider's documented ``min_poll_interval``
    (``None``: use the providers' own floors; ``{}``: no floors, e.g. for short emulated jobs)."""
    target_median_delay: float = 1.8
    target_p90_delay: float = 5.6
    learn: bool = True
    min_samples: int = 8
    """Job times seen before the schedule is planned from them."""
    window: int = 200
    """Most recent job times kept per vendor and kind."""
    learned: dict[str, float] = field(default_factory=dict)
    """Median observed job time per key (vendor, or ``vendor/kind``), seconds."""
    _samples: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _sorted: dict[str, list[float]] = field(default_factory=dict, repr=False)
    """The same job times as ``_samples``, kept sorted (a median per job without sorting the window)."""
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _plans: dict[tuple[str, float], tuple[int, list[float]]] = field(default_factory=dict, repr=False)

    def expected_for(self, provider: str, kind: str = "") -> float:
        """The median job time learned for ``provider`` (and ``kind``), else ``expected``."""
        return self.learned.get(_key(provider, kind), self.expected)

    def next_wait(self, provider: str, elapsed: float, checks: int, floor: float = 0.0, kind: str = "") -> float:
        """Seconds until the next check of a job ``elapsed`` seconds old after ``checks`` checks;
        ``floor`` is the provider's documented minimum interval (``Provider.min_poll_interval``);
        ``kind`` narrows learning to jobs alike (e.g. mode and steps)."""
        if self.min_interval is not None:
            floor = self.min_interval.get(provider, 0.0)
        plan = self._plan(_key(provider, kind), floor)
        if plan:
            index = bisect.bisect_right(plan, elapsed + 1e-9)
            if index < len(plan):
                return max(floor, plan[index] - elapsed)
            # Slower than every job the plan was made from (in a burst the first jobs to end are the short
            # ones): keep the plan's last spacing, widening by ``backoff`` per half median job time past it.
            last_gap = plan[-1] - plan[-2] if len(plan) > 1 else self.interval
            late = (elapsed - plan[-1]) / max(0.5 * self.expected_for(provider, kind), 1e-9)
            return max(floor, min(self.max_interval, last_gap * math.pow(self.backoff, min(late, 20))))
        expected = self.expected_for(provider, kind)
        if checks == 0 and elapsed < self.first_fraction * expected:
            return max(floor, self.first_fraction * expected - elapsed)
        if elapsed < 1.5 * expected:
            return max(floor, self.interval)
        late = (elapsed - 1.5 * expected) / max(self.interval, 1e-9)
        return max(floor, min(self.max_interval, self.interval * float(self.backoff ** min(late, 20))))

    def observe(self, provider: str, duration: float, *, lower: float | None = None, kind: str = "") -> None:
        """Record a finished job that took ``duration`` seconds after the vendor took it.

        With ``lower`` the time is a check's view: the job was seen done at age ``duration`` and last seen
        unfinished at age ``lower`` (``0``: the first check already saw it done), so it ended in between.
        The midpoint is kept; with no earlier check, 75 % of ``duration``, so a first check placed too
        late pulls the plan earlier instead of teaching it that jobs are slow (and a burst whose first
        check catches many jobs at once does not collapse the estimate). ``lower=None`` takes
        ``duration`` as exact."""
        if not self.learn or duration <= 0 or not math.isfinite(duration):
            return
        for key in dict.fromkeys((provider, _key(provider, kind))):
            samples = self._samples.setdefault(key, deque(maxlen=self.window))
            ordered = self._sorted.setdefault(key, [])
            if lower is None or lower >= duration:
                value = duration
            elif lower > 0:
                value = (lower + duration) / 2
            else:  # done at the first check: somewhere before it; lean early, so a late first check moves up
                value = _FIRST_CHECK_SHARE * duration
            if len(samples) == samples.maxlen:  # the oldest time leaves the window
                del ordered[bisect.bisect_left(ordered, samples[0])]
            samples.append(value)
            bisect.insort(ordered, value)
            self._counts[key] = self._counts.get(key, 0) + 1
            self.learned[key] = ordered[len(ordered) // 2]

    def _plan(self, key: str, floor: float) -> list[float]:
        samples = self._samples.get(key)
        if not self.learn or samples is None or len(samples) < self.min_samples:
            return []
        cached = self._plans.get((key, floor))
        total = self._counts[key]
        if cached is not None and not _stale(cached[0], total):
            return cached[1]
        plan = plan_checks(samples, target_median=self.target_median_delay, target_p90=self.target_p90_delay,
                           floor=floor)
        self._plans[(key, floor)] = (total, plan)
        return plan


def _stale(planned_at: int, now: int) -> bool:
    """Re-plan after every few new job times while learning is young, then every 25 (a plan costs
    milliseconds; spread over 25 jobs it stays small beside the per-job cost)."""
    return now - planned_at >= (4 if planned_at < 40 else 25)


def _key(provider: str, kind: str) -> str:
    return f"{provider}/{kind}" if kind else provider


def plan_checks(durations: Sequence[float], *, target_median: float, target_p90: float,
                floor: float = 0.0) -> list[float]:
    """Check times (seconds after the vendor took the job) for jobs whose times look like ``durations``.

    Minimizes the expected number of checks subject to a median detection delay ≤ ``target_median``
    and p90 ≤ ``target_p90`` on a smoothed distribution of ``durations`` (Lagrangian relaxation,
    bisected on the multiplier); no two checks closer than ``floor``.
    """
    ordered = sorted(d for d in durations if d > 0 and math.isfinite(d))
    if not ordered:
        return []
    n = len(ordered)
    spread = ordered[(3 * n) // 4] - ordered[n // 4]
    bandwidth = max(0.5, 0.9 * min(_stdev(ordered), spread / 1.34 if spread else math.inf) * n ** -0.2)
    margin = 3 * bandwidth + 0.15 * (ordered[-1] - ordered[0])
    start = max(0.0, ordered[0] - margin)
    end = ordered[-1] + margin
    middle = ordered[n // 2]
    grid = min(_GRID, max(0.02, middle / 60))
    # A delay target in seconds suits minute-long jobs; a 2 s job should not wait 1.8 s to be seen.
    target_median = min(target_median, max(grid, _RELATIVE[0] * middle))
    target_p90 = min(target_p90, max(2 * grid, _RELATIVE[1] * middle))
    grid = max(grid, (end - start) / _MAX_POINTS)  # bounds the planning cost whatever the job times
    if floor > grid:
        # The floor in whole grid steps, rounded down: a 5 s floor on a 0.54 s grid would otherwise space
        # every check 5.4 s apart (8 % more delay than the vendor asks for).
        grid = floor / math.floor(floor / grid)
    steps = max(2, math.ceil((end - start) / grid))
    times = [start + i * grid for i in range(steps + 1)]
    # A share of uniform mass over the whole span keeps checks where few jobs have ended yet: with few
    # samples the smoothed density has holes, and a plan with long gaps there would never learn better.
    share = 0.05 + 4 / (n + 4)
    span = end - start
    cdf = [(1 - share) * _smoothed_cdf(ordered, t, bandwidth) + share * (t - start) / span for t in times]
    cdf[-1] = 1.0
    min_gap = max(1, math.ceil(floor / grid - 1e-9))
    # A vendor's floor can put the targets out of reach (5 s between checks: a median delay near 2.5 s);
    # then aim at what the floor allows instead of checking as densely as possible.
    target_median = max(target_median, 0.55 * floor)
    target_p90 = max(target_p90, 0.95 * floor)
    points = _jittered(ordered, bandwidth)
    best: tuple[float, list[float]] | None = None
    # Two constraints, two multipliers: try a few ratios between them, bisect the overall weight for
    # each, and keep the cheapest schedule that meets both targets.
    for ratio in (0.25, 1.0, 4.0, 16.0):
        low, high = 0.0, 1e4
        for _ in range(12):
            weight = (low + high) / 2
            checks = _solve(times, cdf, weight, ratio, target_median, target_p90, min_gap, grid)
            calls = _score(checks, points, target_median, target_p90)
            if calls is None:
                low = weight
                continue
            high = weight
            if best is None or calls < best[0]:
                best = (calls, checks)
    if best is None:  # targets out of reach (e.g. under a vendor's floor): the densest schedule allowed
        return _solve(times, cdf, 1e6, 1.0, target_median, target_p90, min_gap, grid)
    return best[1]


def _solve(times: list[float], cdf: list[float], weight: float, ratio: float, d50: float, d90: float,
           min_gap: int, grid: float) -> list[float]:
    """The check schedule minimizing E[checks] + weight·(P(delay > d50) + ratio·P(delay > d90))."""
    count = len(times) - 1
    max_gap = max(min_gap, round(min(_MAX_GAP, d50 + d90) / grid))
    shift50, shift90 = round(d50 / grid), round(d90 / grid)
    best = [0.0] * (count + 1)
    nxt = [count] * (count + 1)
    for i in range(count - 1, -1, -1):
        survive = 1.0 - cdf[i]
        top = count if i == 0 else min(count, i + max_gap)
        value, choice = math.inf, count
        for j in range(min(count, i + min_gap), top + 1):
            late50 = cdf[j - shift50] - cdf[i] if j - shift50 > i else 0.0
            late90 = cdf[j - shift90] - cdf[i] if j - shift90 > i else 0.0
            cost = survive + weight * (late50 + ratio * late90) + best[j]
            if cost < value:
                value, choice = cost, j
        best[i], nxt[i] = value, choice
    checks, i = [], 0
    while i < count:
        i = nxt[i]
        checks.append(round(times[i], 3))
    return checks


def _jittered(ordered: Sequence[float], bandwidth: float) -> list[float]:
    """The smoothed sample ``_score`` judges schedules on: five jittered copies of each job time, sorted."""
    return sorted(max(0.0, d + offset) for d in ordered
                  for offset in (-bandwidth, -bandwidth / 2, 0.0, bandwidth / 2, bandwidth))


def _score(checks: list[float], points: Sequence[float], d50: float, d90: float) -> float | None:
    """Mean checks per job on the smoothed sample ``points`` (``_jittered``), or ``None`` if a target is
    missed. A point is seen by the first check at or after it; ``points`` is sorted, so each gap between
    checks takes a slice (one bisection per check, not one per point: this ran 48 times per plan)."""
    delays: list[float] = []
    calls, lo = 0, 0
    for index, check in enumerate(checks):
        hi = bisect.bisect_right(points, check, lo)
        delays += [check - t for t in points[lo:hi]]
        calls += (hi - lo) * (index + 1)
        lo = hi
    missed = len(points) - lo  # later than every check: never seen
    delays += [math.inf] * missed
    calls += missed * (len(checks) + 1)
    delays.sort()
    if delays[len(delays) // 2] > d50 or delays[int(0.9 * (len(delays) - 1))] > d90:
        return None
    return calls / len(delays)


def _smoothed_cdf(ordered: Sequence[float], t: float, bandwidth: float) -> float:
    scale = bandwidth * math.sqrt(2)
    return sum(0.5 * (1 + math.erf((t - d) / scale)) for d in ordered) / len(ordered)


def _stdev(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) or 1.0
