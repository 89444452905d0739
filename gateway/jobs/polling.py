"""When to check a running vendor job: late first, then often near the expected end, then backing off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PollPolicy"]


@dataclass
class PollPolicy:
    """When to check a running job (seconds).

    The first check comes at ``first_fraction`` of the expected duration, then every ``interval``
    until ``1.5 ×`` the expected duration, then backing off by ``backoff`` up to ``max_interval``.
    The expected duration starts at ``expected`` and follows each vendor's observed jobs (moving
    average), so checks land where jobs actually finish. ``max_wait`` bounds one job; a job still
    running then is treated as stuck.
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
    learned: dict[str, float] = field(default_factory=dict)

    def expected_for(self, provider: str) -> float:
        return self.learned.get(provider, self.expected)

    def next_wait(self, provider: str, elapsed: float, checks: int, floor: float = 0.0) -> float:
        """Seconds until the next check of a job ``elapsed`` seconds old after ``checks`` checks;
        ``floor`` is the provider's documented minimum interval (``Provider.min_poll_interval``)."""
        expected = self.expected_for(provider)
        if self.min_interval is not None:
            floor = self.min_interval.get(provider, 0.0)
        if checks == 0 and elapsed < self.first_fraction * expected:
            return max(floor, self.first_fraction * expected - elapsed)
        if elapsed < 1.5 * expected:
            return max(floor, self.interval)
        late = (elapsed - 1.5 * expected) / max(self.interval, 1e-9)
        return max(floor, min(self.max_interval, self.interval * float(self.backoff ** min(late, 20))))

    def observe(self, provider: str, duration: float) -> None:
        previous = self.learned.get(provider)
        self.learned[provider] = duration if previous is None else 0.7 * previous + 0.3 * duration
