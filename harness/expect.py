"""Expectations over a live timeline: did the app cope with hot-add and ballooning?

Each check is deadline-based: it passes as soon as the timeline shows what it needs, and
fails only once its window is over (no fixed sleeps). Every outcome is recorded for the
reports; a failure raises ExpectationFailed showing the window of samples that failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from harness.deadline import Deadline, wait_until
from harness.errors import DeadlineError, ExpectationFailed
from harness.report.model import ExpectationResult as Outcome
from harness.timeline import MEMORY_EVENT_KINDS, Event, Sample, Timeline

DEFAULT_ERROR_PATTERNS = (r"\bFATAL\b", r"Traceback \(most recent call last\)", r"\bpanic\b")


def window_table(samples: Sequence[Sample], metric: str | None = None) -> str:
    """The failing samples as a small text table (what a reader needs to see)."""
    header = "     t  assigned  demand  g.total  g.avail  app.ws"
    if metric:
        header += f"  app.{metric}"
    lines = [header]
    if len(samples) > 20:
        lines.append(f"  ... {len(samples) - 20} earlier samples")
    for s in samples[-20:]:
        row = (
            f"{s.t:6.1f}  {_v(s.host.assigned_mb if s.host else None):>8}"
            f"  {_v(s.host.demand_mb if s.host else None):>6}"
            f"  {_v(s.guest.total_mb if s.guest else None):>7}"
            f"  {_v(s.guest.available_mb if s.guest else None):>7}"
            f"  {_v(s.app.working_set_mb if s.app else None):>6}"
        )
        if metric:
            row += f"  {_v(s.app.reported.get(metric) if s.app else None):>{len(metric) + 4}}"
        lines.append(row)
    return "\n".join(lines)


def _v(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def guest_total(sample: Sample) -> float | None:
    return float(sample.guest.total_mb) if sample.guest else None


class Expectations:
    """Checks against one test's timeline and app output; remembers every outcome."""

    def __init__(self, timeline: Timeline, output: Callable[[], str] = lambda: "") -> None:
        self.timeline = timeline
        self.output = output
        self.outcomes: list[Outcome] = []
        self._collecting: list[str] | None = None

    @contextmanager
    def together(self) -> Iterator[None]:
        """Check every expectation in the block, then fail once listing all that failed, so
        a report shows each reason, not only the first."""
        self._collecting = []
        try:
            yield
        finally:
            failures, self._collecting = self._collecting, None
        if failures:
            raise ExpectationFailed(
                f"{len(failures)} expectation(s) failed:\n\n" + "\n\n".join(failures)
            )

    def _record(
        self, outcome: Outcome, samples: Sequence[Sample] = (), metric: str | None = None
    ) -> None:
        self.outcomes.append(outcome)
        if outcome.passed:
            return
        table = (
            f"\nsamples in the failing window:\n{window_table(samples, metric)}" if samples else ""
        )
        message = f"{outcome.name}: {outcome.detail}{table}"
        if self._collecting is None:
            raise ExpectationFailed(message)
        self._collecting.append(message)

    def _last_memory_event(self) -> Event | None:
        events = [e for e in self.timeline.events if e.kind in MEMORY_EVENT_KINDS]
        return events[-1] if events else None

    # -- behaviour -------------------------------------------------------------------------
    def app_survived(self, error_patterns: Sequence[str] = DEFAULT_ERROR_PATTERNS) -> None:
        """The app is still running (or exited 0) and printed no error line."""
        name = "app survived"
        samples = [s for s in self.timeline.samples if s.app is not None]
        if not samples:
            self._record(Outcome(name, False, "no sample of the app was taken"))
            return
        dead = next((s for s in samples if s.app and s.app.exit_code not in (None, 0)), None)
        if dead is not None and dead.app is not None:
            window = [s for s in samples if dead.t - 5 <= s.t <= dead.t]
            detail = f"the app exited with code {dead.app.exit_code} at t={dead.t:.1f}s"
            lines = [line for line in self.output().splitlines() if line.strip()]
            if lines:
                detail += f"; its last output line: {lines[-1].strip()[:200]!r}"
            self._record(Outcome(name, False, detail, window[0].t, dead.t), window)
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
        truth: Callable[[Sample], float | None] = guest_total,
        tolerance_mb: float = 64,
        within: float = 5.0,
    ) -> None:
        """After every change, the app's reported `metric` matches the guest's truth within
        `tolerance_mb`, no later than `within` seconds after the truth took that value.

        Waits until `within` seconds after the last memory event, so the last change is seen."""
        name = f"app's {metric} tracks the guest"
        last = self._last_memory_event()
        if last is not None:
            self.timeline.wait_until(last.t + within + 0.5)
        samples = [s for s in self.timeline.samples if s.app is not None and truth(s) is not None]
        reported = [s for s in samples if s.app is not None and metric in s.app.reported]
        if not reported:
            self._record(
                Outcome(name, False, f"the app never reported {metric!r} (its probe saw nothing)")
            )
            return
        start = reported[0].t + within
        for s in reported:
            if s.t < start or s.app is None:
                continue
            value = s.app.reported[metric]
            recent = [
                t
                for t in (truth(r) for r in samples if s.t - within <= r.t <= s.t)
                if t is not None
            ]
            # Samples can miss values the guest passed through between two ticks, so any value
            # within the range the truth spanned in the window counts as tracking it.
            if recent and min(recent) - tolerance_mb <= value <= max(recent) + tolerance_mb:
                continue
            window = [r for r in samples if s.t - 2 * within <= r.t <= s.t]
            shown = ", ".join(sorted({f"{t:.0f}" for t in recent}))
            detail = (
                f"at t={s.t:.1f}s the app reported {metric}={value:.0f} but the guest showed {shown} "
                f"in the {within:g}s before (tolerance {tolerance_mb:g} MB)"
            )
            self._record(Outcome(name, False, detail, window[0].t, s.t), window, metric)
            return
        self._record(
            Outcome(
                name, True, f"{len(reported)} reports within {tolerance_mb:g} MB and {within:g}s"
            )
        )

    def working_set_within_guest(self) -> None:
        """The app's working set never exceeds the memory the guest has."""
        name = "app's working set within guest memory"
        for s in self.timeline.samples:
            if s.app and s.guest and s.guest.total_mb and s.app.working_set_mb > s.guest.total_mb:
                detail = (
                    f"working set {s.app.working_set_mb:.0f} MB > guest total {s.guest.total_mb} MB"
                )
                self._record(Outcome(name, False, detail, s.t, s.t), [s])
                return
        self._record(Outcome(name, True, "always within the guest's memory"))

    def bounds_honoured(self) -> None:
        """Host side: assigned memory stays within [minimum, maximum] while the VM runs."""
        name = "assigned memory within minimum and maximum"
        for s in self.timeline.samples:
            h = s.host
            if h is None or h.state != "Running" or not h.assigned_mb:
                continue
            if not h.minimum_mb <= h.assigned_mb <= h.maximum_mb:
                detail = f"assigned {h.assigned_mb} MB outside [{h.minimum_mb}, {h.maximum_mb}] MB at t={s.t:.1f}s"
                self._record(Outcome(name, False, detail, s.t, s.t), [s])
                return
        self._record(Outcome(name, True, "assigned memory always within the VM's bounds"))

    def releases_after(self, event: Event, within: float = 10.0, fraction: float = 0.2) -> None:
        """After a pressure event, the app's working set drops by at least `fraction`."""
        self._working_set_moves(
            f"app releases memory after {event.message}",
            event,
            within,
            goal=lambda peak: peak * (1 - fraction),
            rising=False,
            missed=lambda peak, low: (
                f"working set stayed at {low:.0f} MB or more (was {peak:.0f} MB) for {within:g}s "
                "after the event"
            ),
        )

    def grows_after(self, event: Event, within: float = 10.0, min_growth_mb: float = 32) -> None:
        """After memory was added, the app makes use of it (its working set grows)."""
        self._working_set_moves(
            f"app grows into memory after {event.message}",
            event,
            within,
            goal=lambda base: base + min_growth_mb,
            rising=True,
            missed=lambda base, high: (
                f"working set grew only {high - base:.0f} MB (< {min_growth_mb:g}) in {within:g}s"
            ),
        )

    def _working_set_moves(
        self,
        name: str,
        event: Event,
        within: float,
        *,
        goal: Callable[[float], float],
        rising: bool,
        missed: Callable[[float, float], str],
    ) -> None:
        """Within `within` seconds after `event`, the app's working set reaches `goal(base)`
        (rising to it or falling to it), base being the last working set before the event;
        `missed(base, nearest)` says how far it got when it does not."""
        before = [s for s in self.timeline.samples if s.app and s.t <= event.t]
        if not before or before[-1].app is None:
            self._record(Outcome(name, False, "no sample of the app before the event"))
            return
        base = before[-1].app.working_set_mb
        target = goal(base)

        def reached(s: Sample) -> bool:
            if s.app is None or s.t <= event.t:
                return False
            ws = s.app.working_set_mb
            return ws >= target if rising else ws <= target

        try:
            hit = wait_until(
                lambda: next((s for s in self.timeline.samples if reached(s)), None),
                Deadline.at(event.t + within, clock=self.timeline.now),
                what=name,
                interval=0.1,
            )
        except DeadlineError:
            after = self.timeline.samples_between(event.t, event.t + within)
            seen = [s.app.working_set_mb for s in after if s.app]
            nearest = (max if rising else min)(seen, default=base)
            self._record(
                Outcome(name, False, missed(base, nearest), event.t, event.t + within),
                before[-3:] + after,
            )
            return
        assert hit.app is not None
        detail = (
            f"working set {base:.0f} → {hit.app.working_set_mb:.0f} MB in {hit.t - event.t:.1f}s"
        )
        self._record(Outcome(name, True, detail))
