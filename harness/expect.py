"""Expectations over a timeline: did the app cope with hot-add and ballooning?

Each check is deadline-based (the app gets `within` seconds to react, no fixed sleeps), is
recorded for the reports, and on failure raises ExpectationFailed showing the window of
samples that failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from harness.errors import ExpectationFailed
from harness.report.model import ExpectationResult as Outcome
from harness.timeline import Event, Sample, Timeline

DEFAULT_ERROR_PATTERNS = (r"\bFATAL\b", r"Traceback \(most recent call last\)", r"\bpanic\b")


def window_table(samples: Sequence[Sample], metric: str | None = None) -> str:
    """The failing samples as a small text table (what a reader needs to see)."""
    header = "     t  assigned  demand  g.total  g.avail  app.ws"
    if metric:
        header += f"  app.{metric}"
    lines = [header]
    for s in samples[:20]:
        row = (
            f"{s.t:6.1f}  {_v(s.host.assigned_mb if s.host else None):>8}"
            f"  {_v(s.host.demand_mb if s.host else None):>6}"
            f"  {_v(s.guest.total_mb if s.guest else None):>7}  {_v(s.guest.available_mb if s.guest else None):>7}"
            f"  {_v(s.app.working_set_mb if s.app else None):>6}"
        )
        if metric:
            row += f"  {_v(s.app.reported.get(metric) if s.app else None):>{len(metric) + 4}}"
        lines.append(row)
    if len(samples) > 20:
        lines.append(f"  ... {len(samples) - 20} more samples")
    return "\n".join(lines)


def _v(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


class Expectations:
    """Checks against one test's timeline and app output; remembers every outcome."""

    def __init__(self, timeline: Timeline, output: Callable[[], str] = lambda: "") -> None:
        self.timeline = timeline
        self.output = output
        self.outcomes: list[Outcome] = []

    def _record(
        self, outcome: Outcome, samples: Sequence[Sample] = (), metric: str | None = None
    ) -> None:
        self.outcomes.append(outcome)
        if not outcome.passed:
            table = (
                f"\nsamples in the failing window:\n{window_table(samples, metric)}"
                if samples
                else ""
            )
            raise ExpectationFailed(f"{outcome.name}: {outcome.detail}{table}")

    def app_survived(self, error_patterns: Sequence[str] = DEFAULT_ERROR_PATTERNS) -> None:
        """The app is still running (or exited 0) and printed no error line."""
        samples = [s for s in self.timeline.samples if s.app is not None]
        name = "app survived"
        if not samples:
            self._record(Outcome(name, False, "no sample of the app was taken"))
            return
        dead = next((s for s in samples if s.app and s.app.exit_code not in (None, 0)), None)
        if dead is not None and dead.app is not None:
            window = [s for s in samples if dead.t - 5 <= s.t <= dead.t]
            self._record(
                Outcome(
                    name,
                    False,
                    f"the app exited with code {dead.app.exit_code} at t={dead.t:.1f}s",
                    window[0].t,
                    dead.t,
                ),
                window,
            )
            return
        for line in self.output().splitlines():
            for pattern in error_patterns:
                if re.search(pattern, line):
                    self._record(
                        Outcome(
                            name, False, f"error line in the app's output: {line.strip()[:200]!r}"
                        )
                    )
                    return
        self._record(Outcome(name, True, f"running through {len(samples)} samples, no error lines"))

    def view_tracks_truth(
        self,
        metric: str = "total_mb",
        truth: Callable[[Sample], float | None] = lambda s: s.guest.total_mb if s.guest else None,
        tolerance_mb: float = 64,
        within: float = 5.0,
        settle: float = 2.0,
    ) -> None:
        """After every change, the app's reported `metric` matches the guest's truth within
        `tolerance_mb`, no later than `within` seconds after the truth took that value."""
        name = f"app's {metric} tracks the guest"
        samples = [s for s in self.timeline.samples if s.app is not None and truth(s) is not None]
        reported = [s for s in samples if metric in (s.app.reported if s.app else {})]
        if not reported:
            self._record(
                Outcome(name, False, f"the app never reported {metric!r} (probe saw nothing)")
            )
            return
        start = reported[0].t + settle
        for s in samples:
            if s.t < start or s.app is None or metric not in s.app.reported:
                continue
            value = s.app.reported[metric]
            recent = [truth(r) for r in samples if s.t - within <= r.t <= s.t]
            if any(t is not None and abs(value - t) <= tolerance_mb for t in recent):
                continue
            window = [r for r in samples if s.t - 2 * within <= r.t <= s.t]
            self._record(
                Outcome(
                    name,
                    False,
                    f"at t={s.t:.1f}s the app reported {metric}={value:.0f} but the guest showed "
                    f"{', '.join(f'{t:.0f}' for t in recent if t is not None)} in the last {within:g}s "
                    f"(tolerance {tolerance_mb:g} MB)",
                    window[0].t,
                    s.t,
                ),
                window,
                metric,
            )
            return
        self._record(
            Outcome(name, True, f"{len(reported)} reports within {tolerance_mb:g} MB, {within:g}s")
        )

    def working_set_within_guest(self) -> None:
        """The app's working set never exceeds the memory the guest has."""
        name = "app's working set within guest memory"
        for s in self.timeline.samples:
            if s.app and s.guest and s.guest.total_mb and s.app.working_set_mb > s.guest.total_mb:
                self._record(
                    Outcome(
                        name,
                        False,
                        f"working set {s.app.working_set_mb:.0f} MB > guest total {s.guest.total_mb} MB",
                        s.t,
                        s.t,
                    ),
                    [s],
                )
                return
        self._record(Outcome(name, True, "always within the guest's memory"))

    def releases_after(self, event: Event, within: float = 10.0, fraction: float = 0.2) -> None:
        """After a pressure event, the app's working set drops by at least `fraction`."""
        name = f"app releases memory after {event.message}"
        before = [s for s in self.timeline.samples if s.app and s.t <= event.t]
        after = [s for s in self.timeline.samples if s.app and event.t < s.t <= event.t + within]
        if not before or not after:
            self._record(Outcome(name, False, "no samples of the app around the event"))
            return
        peak = before[-1].app.working_set_mb if before[-1].app else 0.0
        low = min(s.app.working_set_mb for s in after if s.app)
        if low <= peak * (1 - fraction):
            self._record(
                Outcome(name, True, f"working set {peak:.0f} → {low:.0f} MB within {within:g}s")
            )
            return
        self._record(
            Outcome(
                name,
                False,
                f"working set stayed at {low:.0f} MB or more (was {peak:.0f} MB) for {within:g}s after the event",
                event.t,
                event.t + within,
            ),
            before[-3:] + after,
        )

    def grows_after(self, event: Event, within: float = 10.0, min_growth_mb: float = 32) -> None:
        """After memory was added, the app makes use of it (its working set grows)."""
        name = f"app grows into memory after {event.message}"
        before = [s for s in self.timeline.samples if s.app and s.t <= event.t]
        after = [s for s in self.timeline.samples if s.app and event.t < s.t <= event.t + within]
        if not before or not after:
            self._record(Outcome(name, False, "no samples of the app around the event"))
            return
        base = before[-1].app.working_set_mb if before[-1].app else 0.0
        high = max(s.app.working_set_mb for s in after if s.app)
        if high >= base + min_growth_mb:
            self._record(
                Outcome(name, True, f"working set {base:.0f} → {high:.0f} MB within {within:g}s")
            )
            return
        self._record(
            Outcome(
                name,
                False,
                f"working set grew only {high - base:.0f} MB (< {min_growth_mb:g}) in {within:g}s",
                event.t,
                event.t + within,
            ),
            before[-3:] + after,
        )
