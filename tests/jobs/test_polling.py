"""The poll schedule: a prior until a vendor has shown enough jobs, then a plan from its job times."""

from __future__ import annotations

import bisect
import itertools
import math
import random

import pytest

from gateway.jobs.polling import PollPolicy, plan_checks


def schedule(policy: PollPolicy, provider: str, floor: float = 0.0, until: float = 400.0) -> list[float]:
    """The check times the policy would make for a job that never finishes before ``until``."""
    elapsed, checks, out = 0.0, 0, []
    while elapsed < until:
        elapsed += policy.next_wait(provider, elapsed, checks, floor)
        checks += 1
        out.append(elapsed)
    return out


def measure(checks: list[float], durations: list[float]) -> tuple[float, float, float]:
    """Mean status calls per job, median and p90 detection delay, for jobs ending at ``durations``."""
    calls, delays = [], []
    for d in durations:
        index = bisect.bisect_left(checks, d)
        calls.append(index + 1)
        delays.append(checks[index] - d)
    delays.sort()
    return sum(calls) / len(calls), delays[len(delays) // 2], delays[int(0.9 * (len(delays) - 1))]


DISTRIBUTIONS = {
    "narrow": lambda rng: rng.uniform(45, 75),
    "wide": lambda rng: rng.uniform(20, 120),
    "lognormal": lambda rng: 60 * math.exp(rng.gauss(0, 0.35)),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_a_learned_plan_meets_the_delay_targets_on_fresh_jobs_with_few_calls(name):
    rng = random.Random(7)
    draw = DISTRIBUTIONS[name]
    policy = PollPolicy()
    for _ in range(200):
        policy.observe("v", draw(rng))
    checks = schedule(policy, "v")
    calls, p50, p90 = measure(checks, [draw(rng) for _ in range(2000)])
    assert p50 <= 2.0 and p90 <= 6.0, (p50, p90)
    assert calls <= {"narrow": 8, "wide": 12, "lognormal": 12}[name], calls


def test_the_prior_schedule_holds_until_enough_jobs_were_seen():
    policy = PollPolicy(expected=60.0, min_samples=8)
    assert policy.next_wait("v", 0.0, 0) == 45.0  # 75 % of the expected 60 s
    for _ in range(7):
        policy.observe("v", 20.0)
    assert policy.next_wait("v", 0.0, 0) == 0.75 * 20.0  # the prior follows the median seen so far
    policy.observe("v", 20.0)
    assert 20.0 < policy.next_wait("v", 0.0, 0) <= 20.0 + 1.8  # planned: one check just after 20 s
    assert policy.next_wait("other", 0.0, 0) == 45.0  # learning is per vendor


def test_a_vendor_floor_is_never_undercut_and_the_plan_adapts_to_it():
    rng = random.Random(3)
    policy = PollPolicy()
    for _ in range(100):
        policy.observe("ws", rng.uniform(20, 120))
    checks = schedule(policy, "ws", floor=5.0)
    assert min(b - a for a, b in zip([0.0, *checks], checks, strict=False)) >= 5.0 - 1e-9
    calls, p50, _ = measure(checks, [rng.uniform(20, 120) for _ in range(1000)])
    assert p50 <= 0.55 * 5.0 + 0.5 and calls <= 12  # what a 5 s floor allows, not the densest schedule


def test_a_floor_bound_plan_checks_at_the_floor_itself_not_a_grid_step_above_it():
    # A wide spread makes the planning grid coarser than 0.5 s (0.54 s here); a 5 s floor rounded up to
    # whole steps spaced every check 5.4 s apart, and WaveSpeed's median delay grew past what 5 s allows.
    rng = random.Random(5)
    samples = [rng.uniform(20, 120) for _ in range(200)]
    plan = plan_checks(samples, target_median=1.8, target_p90=5.6, floor=5.0)
    gaps = [b - a for a, b in itertools.pairwise(plan[:-1])]
    assert min(gaps) >= 5.0 - 1e-3 and min(gaps) <= 5.0 + 1e-3, sorted(gaps)[:3]
    calls, p50, p90 = measure(plan, [rng.uniform(20, 120) for _ in range(2000)])
    assert p50 <= 0.55 * 5.0 + 0.25 and p90 <= 6.0 and calls <= 12, (calls, p50, p90)


def test_observed_times_are_taken_inside_the_censoring_interval():
    policy = PollPolicy()
    policy.observe("v", 64.0, lower=60.0)  # last seen running at 60 s, done at 64 s
    assert policy.learned["v"] == 62.0
    policy.observe("k", 10.0, lower=12.0)  # a lower bound past the end says nothing: taken as exact
    assert policy.learned["k"] == 10.0
    first = PollPolicy()
    first.observe("f", 40.0, lower=0.0)  # done at the first check at 40 s: learned early, at 75 % of it
    assert first.learned["f"] == 30.0


def test_learning_from_checks_converges_instead_of_drifting_late():
    """Jobs seen only through the policy's own checks (as the runner sees them): the plan must keep
    meeting the targets, not learn its own detection delay and drift later (the bug this guards)."""
    rng = random.Random(5)
    policy = PollPolicy()
    calls, delays = [], []
    for _ in range(200):
        ends = rng.uniform(20, 120)
        elapsed, checks, last_unfinished = 0.0, 0, 0.0
        while True:
            elapsed += policy.next_wait("v", elapsed, checks)
            checks += 1
            if elapsed >= ends:
                break
            last_unfinished = elapsed
        calls.append(checks)
        delays.append(elapsed - ends)
        policy.observe("v", elapsed, lower=last_unfinished)
    delays.sort()
    assert sum(calls) / len(calls) <= 12 and delays[100] <= 2.0 and delays[180] <= 6.0


def test_learning_off_keeps_the_prior_and_kinds_learn_apart():
    off = PollPolicy(learn=False)
    for _ in range(50):
        off.observe("v", 10.0)
    assert off.next_wait("v", 0.0, 0) == 45.0 and off.learned == {}
    on = PollPolicy()
    for _ in range(10):
        on.observe("v", 10.0, kind="i2v/30")
    assert on.expected_for("v", "i2v/30") == 10.0 and on.expected_for("v", "i2v/80") == 60.0


def test_past_the_plan_it_backs_off_to_the_max_interval():
    policy = PollPolicy(max_interval=15.0)
    for _ in range(20):
        policy.observe("v", 30.0)
    plan = schedule(policy, "v", until=1000.0)
    gaps = [b - a for a, b in itertools.pairwise(plan)]
    assert max(gaps) == 15.0 and plan[-1] >= 1000.0


def test_plan_checks_is_empty_without_data_and_increasing_with_it():
    assert plan_checks([], target_median=1.8, target_p90=5.6) == []
    plan = plan_checks([50.0, 55.0, 60.0, 65.0], target_median=1.8, target_p90=5.6)
    assert plan == sorted(plan) and len(set(plan)) == len(plan) and plan[0] > 30.0


# ---- the planner's inner loops, rewritten for speed, must plan exactly as before ------------------
def _solve_reference(times, cdf, weight, ratio, d50, d90, min_gap, grid):  # the loop before issue 14's cut
    import math
    count = len(times) - 1
    max_gap = max(min_gap, round(min(30.0, d50 + d90) / grid))
    shift50, shift90 = round(d50 / grid), round(d90 / grid)
    best, nxt = [0.0] * (count + 1), [count] * (count + 1)
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


def _score_reference(checks, ordered, bandwidth, d50, d90):
    import bisect
    import math
    delays, calls = [], 0
    for d in ordered:
        for offset in (-bandwidth, -bandwidth / 2, 0.0, bandwidth / 2, bandwidth):
            t = max(0.0, d + offset)
            index = bisect.bisect_left(checks, t)
            delays.append(checks[index] - t if index < len(checks) else math.inf)
            calls += index + 1
    delays.sort()
    if delays[len(delays) // 2] > d50 or delays[int(0.9 * (len(delays) - 1))] > d90:
        return None
    return calls / len(delays)


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_planner_loops_give_the_reference_answers(seed: int) -> None:
    import random

    from gateway.jobs import polling

    rng = random.Random(seed)
    for _ in range(25):
        count = rng.randint(2, 120)
        grid = rng.choice([0.02, 0.25, 0.5])
        times = [i * grid for i in range(count + 1)]
        cdf = sorted(rng.random() for _ in range(count + 1))
        cdf[-1] = 1.0
        if rng.random() < 0.3:  # plateaus: equal costs, where the first minimum must win
            cdf = [round(c, 1) for c in cdf]
        args = (times, cdf, rng.choice([0.0, 0.5, 7.0, 1e4, 1e6]), rng.choice([0.25, 1.0, 16.0]),
                rng.uniform(0.0, 3.0), rng.uniform(0.0, 9.0), rng.randint(1, 12), grid)
        assert polling._solve(*args) == _solve_reference(*args)
        ordered = sorted(rng.uniform(0.0, 80.0) for _ in range(rng.randint(1, 60)))
        bandwidth = rng.uniform(0.1, 4.0)
        checks = sorted({round(rng.uniform(0.0, 90.0), 3) for _ in range(rng.randint(1, 30))})
        points = polling._jittered(ordered, bandwidth)
        if rng.random() < 0.5:  # checks exactly at some points: a point is seen by a check at its own time
            checks = sorted(set(checks) | set(rng.sample(points, rng.randint(1, len(points)))))
        d50, d90 = rng.uniform(0.0, 5.0), rng.uniform(0.0, 15.0)
        assert polling._score(checks, points, d50, d90) == \
            _score_reference(checks, ordered, bandwidth, d50, d90)


def test_the_learned_median_is_the_median_of_the_window_as_it_slides():
    rng = random.Random(5)
    policy = PollPolicy(window=7)
    seen: list[float] = []
    for _ in range(60):
        duration = rng.choice([rng.uniform(1.0, 90.0), 30.0])  # repeats: the leaving time must be the oldest's
        lower = rng.choice([None, 0.0, duration / 2])
        policy.observe("runware", duration, lower=lower)
        seen.append(duration if lower is None else (lower + duration) / 2 if lower else 0.75 * duration)
        window = sorted(seen[-7:])
        assert policy.learned["runware"] == window[len(window) // 2]
        assert policy._sorted["runware"] == window
