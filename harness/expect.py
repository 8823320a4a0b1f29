"""Expectations over a live timeline: did the app cope with hot-add and ballooning?

The user declares which behaviours apply to the app (`BEHAVIOURS`); a check of a behaviour
that was not asked for is not run. Each check is deadline-based: it passes as soon as the
timeline shows what it needs, and fails only once its window is over (no fixed sleeps).
Every outcome is recorded for the reports; a failure raises ExpectationFailed whose first
line names the expectation in words, with the numbers after it and the samples below.
"""

from __future__ import annotations

import itertools
import re
import signal
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.deadline import Deadline
from harness.errors import ExpectationFailed, SettingError
from harness.timeline import (
    MEMORY_EVENT_KINDS,
    AppSample,
    Event,
    GuestSample,
    Sample,
    Timeline,
)
from harness.verdict import ExpectationResult

if TYPE_CHECKING:
    from harness.appload import LoadReader

DEFAULT_ERROR_PATTERNS = (r"\bFATAL\b", r"Traceback \(most recent call last\)", r"\bpanic\b")

# What an app may be certified on (--dm-expect): it survives memory moving; its own view of
# memory tracks the guest's; it grows into memory added; it releases memory when the host
# wants it back; its working set stays within the guest's memory. An adaptive cache does all.
# And for a program with settings (a cache limit, buffers): its configured limits stay put
# while memory moves under it (asked only by name: an app states which metrics are limits).
BEHAVIOURS = ("survive", "track", "grow", "release", "bounded", "limits")
ALIGNMENT_MB = 2  # Hyper-V assigns memory in 2 MB units: "exact" means within one
TRACK_WITHIN_S = 5.0  # the app's view must match the guest's this soon after a change
TRACK_TOLERANCE_MB = 64  # while memory moves: half a balancer step (128 MB), never more
MOVE_FRACTION = 0.1  # grow/release: this share of the memory moved ...
MOVE_FLOOR_MB = 32.0  # ... and never less than this, well above a process's noise
_HOLD_MARGIN_S = 1.0  # the window is observed when a sample lands after its end
_HOLD_CAP_S = 60.0  # memory that never settles is checked as far as it was observed


def parse_behaviours(text: str) -> tuple[str, ...]:
    """`survive,track,...` as a tuple in the canonical order; SettingError names a bad one."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise SettingError("expected behaviours", repr(text), f"name one or more of {BEHAVIOURS}")
    for name in names:
        if name not in BEHAVIOURS:
            raise SettingError(
                "expected behaviour", repr(name), f"must be one of {', '.join(BEHAVIOURS)}"
            )
    return tuple(b for b in BEHAVIOURS if b in names)


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
    return float(sample.guest.total_mb) if sample.guest and sample.guest.total_mb else None


def _alive(sample: Sample) -> bool:
    return sample.app is not None and sample.app.running and sample.app.exit_code is None


def describe_exit(app: AppSample, t: float, stderr: str = "", output: str = "") -> str:
    """How the app ended, for the first line of a failure: what the guest logged (an OOM
    kill), the exit code or signal, and the last lines it wrote to stderr (else stdout)."""
    code = app.exit_code
    how = f"exited with code {code}"
    if code is not None and code < 0:  # POSIX: killed by a signal
        try:
            how = f"was killed by {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            how = f"was killed by signal {-code}"
    text = f"it {how} at t={t:.1f}s"
    if app.memory_event:
        text = f"{app.memory_event}: {text}"
    lines = [line.strip() for line in (stderr or output).splitlines() if line.strip()]
    if lines:
        where = "stderr" if stderr else "output"
        text += f"; last {where}: " + " | ".join(lines[-2:])[-300:]
    return text


class Expectations:
    """Checks against one test's timeline and app output; remembers every outcome."""

    def __init__(
        self,
        timeline: Timeline,
        output: Callable[[], str] = lambda: "",
        *,
        behaviours: Iterable[str] = BEHAVIOURS,
        track_within: float = TRACK_WITHIN_S,
        stderr: Callable[[], str] = lambda: "",
        total_falls: bool = True,
        view_status: Callable[[], str] | None = None,
        limits: Sequence[str] = (),
        load: LoadReader | None = None,
    ) -> None:
        self.timeline = timeline
        self.limits = tuple(limits)  # the reported metrics that are settings
        # Whether the guest's total drops when memory is ballooned away: Linux's MemTotal
        # does; Windows' total is a high-water mark (reference §4.4, §5.4).
        self.total_falls = total_falls
        self.output = output
        self.stderr = stderr
        self.behaviours = tuple(behaviours)
        self.track_within = track_within
        # With --dm-app-view: what the app's own interface gave (a view that gave nothing is
        # never taken for an app that reports nothing).
        self.view_status = view_status
        # With --dm-app-load: what its runs showed (a run that failed after one succeeded is
        # the app not serving it).
        self.load = load
        self.outcomes: list[ExpectationResult] = []
        self._collecting: list[str] | None = None

    @property
    def checked(self) -> tuple[str, ...]:
        """Behaviours asked for that a check applied to in this test."""
        seen = {o.behaviour for o in self.outcomes if o.applicable}
        return tuple(b for b in self.behaviours if b in seen)

    @property
    def not_asked(self) -> tuple[str, ...]:
        return tuple(b for b in BEHAVIOURS if b not in self.behaviours)

    def asks(self, behaviour: str) -> bool:
        return behaviour in self.behaviours

    @contextmanager
    def together(self) -> Iterator[None]:
        """Check every expectation in the block, then fail once listing all that failed, so
        a report shows each reason; the first line names every expectation that failed."""
        self._collecting = []
        try:
            yield
        finally:
            failures, self._collecting = self._collecting, None
        if failures:
            first = failures[0].splitlines()[0]
            others = [f.splitlines()[0].split(":")[0] for f in failures[1:]]
            also = f" (also: {'; '.join(others)})" if others else ""
            raise ExpectationFailed(f"{first}{also}\n\n" + "\n\n".join(failures))

    def record(
        self, outcome: ExpectationResult, samples: Sequence[Sample] = (), metric: str = ""
    ) -> None:
        """Keep an outcome; a failure raises (or, in `together`, is collected)."""
        self.outcomes.append(outcome)
        if outcome.passed or not outcome.applicable:
            return
        table = (
            f"\nsamples in the failing window:\n{window_table(samples, metric or None)}"
            if samples
            else ""
        )
        message = f"{outcome.detail}{table}"
        if self._collecting is None:
            raise ExpectationFailed(message)
        self._collecting.append(message)

    def _fail(
        self,
        behaviour: str,
        name: str,
        headline: str,
        numbers: str,
        window: tuple[float, float] | None = None,
        samples: Sequence[Sample] = (),
        metric: str = "",
    ) -> None:
        start, end = window if window else (None, None)
        outcome = ExpectationResult(name, False, f"{headline}: {numbers}", start, end, behaviour)
        self.record(outcome, samples, metric)

    def _pass(self, behaviour: str, name: str, detail: str) -> None:
        self.record(ExpectationResult(name, True, detail, behaviour=behaviour))

    def _dead(self) -> Sample | None:
        """The first sample showing the app ended, if it has."""
        # An exit code, not "not running": a tick may catch a process between states.
        return next(
            (s for s in self.timeline.samples if s.app and s.app.exit_code is not None), None
        )

    # -- survive -------------------------------------------------------------------------
    def app_survived(self, error_patterns: Sequence[str] = DEFAULT_ERROR_PATTERNS) -> None:
        """The app is still running and printed no error line."""
        if not self.asks("survive"):
            return
        name, headline = "the app survives", "the app did not survive"
        samples = [s for s in self.timeline.samples if s.app is not None]
        if not samples:
            self._fail("survive", name, headline, "no sample of the app was taken")
            return
        dead = self._dead()
        if dead is not None and dead.app is not None:
            window = [s for s in samples if dead.t - 5 <= s.t <= dead.t]
            how = describe_exit(dead.app, dead.t, self.stderr(), self.output())
            self._fail("survive", name, headline, how, (window[0].t, dead.t), window)
            return
        for line in self.output().splitlines():
            for pattern in error_patterns:
                if re.search(pattern, line):
                    self._fail(
                        "survive", name, headline, f"it printed an error line: {line.strip()[:200]}"
                    )
                    return
        load = ""
        if self.load is not None:
            failure = self.load.failure()
            if failure is not None:
                self._fail("survive", name, headline, failure)
                return
            load = f"; {self.load.status()}"
        self._pass("survive", name, f"running through {len(samples)} samples, no error lines{load}")

    # -- track ---------------------------------------------------------------------------
    def _last_change(self, truth: Callable[[Sample], float | None]) -> float:
        """When the guest's truth last changed (or a memory event last happened)."""
        last = 0.0
        previous: float | None = None
        for s in self.timeline.samples:
            value = truth(s)
            if value is None:
                continue
            if previous is not None and abs(value - previous) >= ALIGNMENT_MB:
                last = s.t
            previous = value
        events = [e.t for e in self.timeline.events if e.kind in MEMORY_EVENT_KINDS]
        return max([last, *events])

    def _hold(self, truth: Callable[[Sample], float | None], metric: str, within: float) -> None:
        """Let the test run until a sample lands `within` seconds after the last change of
        the truth (and after the app's first report), so the window after every change is
        observed — on a busy machine samples come late and seldom, so the clock alone is not
        enough."""
        cap = Deadline(_HOLD_CAP_S + within, clock=self.timeline.now)
        while not cap.expired:
            end = self._last_change(truth) + within + _HOLD_MARGIN_S
            samples = self.timeline.samples
            first = next((s.t for s in samples if s.app and metric in s.app.reported), None)
            if first is not None:
                end = max(end, first + within + _HOLD_MARGIN_S)
            if samples and samples[-1].t >= end:
                return
            wake = max(end, self.timeline.now() + 0.1)
            Deadline.at(min(wake, cap.end), clock=self.timeline.now).run_out()

    def view_tracks_truth(
        self,
        metric: str = "total_mb",
        truth: Callable[[Sample], float | None] = guest_total,
        tolerance_mb: float = TRACK_TOLERANCE_MB,
        within: float | None = None,
    ) -> None:
        """After every change, the app's reported `metric` matches the guest's truth no later
        than `within` seconds (default: the run's setting) after the truth took that value,
        or than its previous report, whichever is earlier (it read its value in between):
        within `tolerance_mb` while memory moves, and within one 2 MB alignment once it has
        held still for `within`. Holds the test until that window after the last change is
        observed. Not applicable when the app reports no `metric`."""
        if not self.asks("track"):
            return
        within = self.track_within if within is None else within
        name = f"the app's {metric} tracks the guest"
        headline = f"the app's {metric} does not track the guest"
        self._hold(truth, metric, within)
        samples = [s for s in self.timeline.samples if truth(s) is not None]
        if not any(s.app and metric in s.app.reported for s in self.timeline.samples):
            if self.view_status is not None and not any(
                s.app and s.app.reported for s in self.timeline.samples
            ):
                self._fail("track", name, headline, f"not observed ({self.view_status()})")
                return
            detail = f"not applicable (the app reports no {metric})"
            self.record(ExpectationResult(name, False, detail, behaviour="track", applicable=False))
            return
        # Judged when the app said it: a value carried forward from an earlier line is no
        # new claim (on a starved guest the app may be silent for longer than the window).
        reports = [
            s
            for s in samples
            if _alive(s) and s.app and s.app.reported_fresh and metric in s.app.reported
        ]
        if not reports:
            numbers = f"not observed (the app ended before it reported {metric})"
            self._fail("track", name, headline, numbers)
            return
        start = reports[0].t + within  # the app may take `within` to read at start
        passed = self._passed_through(samples, truth)
        checked = 0
        # A line seen at a sample arrived after the sample before it.
        arrived_after = {id(b): a.t for a, b in itertools.pairwise(samples)}
        for i, s in enumerate(reports):
            if s.t < start or s.app is None:
                continue
            value = s.app.reported[metric]
            # The app read its value at some moment after its previous line arrived: on a
            # slow guest (TCG) one turn of its loop can take longer than the window.
            since = s.t - within
            if i:
                since = min(since, arrived_after.get(id(reports[i - 1]), reports[i - 1].t))
            recent = [v for r in samples if since <= r.t <= s.t if (v := truth(r))]
            if not recent:
                continue
            checked += 1
            # Samples miss values the guest shows between two ticks: what the host's Added/
            # Removed Memory counters say it passed through in the window counts as shown.
            # Once the truth has held still (no move at all) for the window, it is one value.
            # Only moves between `since` and the report count: what the guest passes through
            # after it (from the report's own sample on) is nothing the app could have read.
            hidden = [(lo, hi) for t0, t1, lo, hi in passed if t1 > since and t0 < s.t]
            low = min([*recent, *(lo for lo, _ in hidden)])
            high = max([*recent, *(hi for _, hi in hidden)])
            slack = ALIGNMENT_MB if high - low < ALIGNMENT_MB else tolerance_mb
            if low - slack <= value <= high + slack:
                continue
            window = [r for r in samples if since - within <= r.t <= s.t]
            now = truth(s) or recent[-1]
            through = (
                f" and passed through {low:.0f}–{high:.0f} MB between samples (the host's "
                f"Added/Removed Memory counters)"
                if (low, high) != (min(recent), max(recent))
                else ""
            )
            silent = " (since its previous report)" if s.t - since > within else ""
            numbers = (
                f"at t={s.t:.1f}s it reported {value:.0f} MB but the guest had shown "
                f"{_span(recent)} MB{through} in the {s.t - since:.3g}s before{silent} "
                f"(allowed: {within:g}s to follow, within {slack:g} MB; now {now:.0f} MB)"
            )
            self._fail("track", name, headline, numbers, (window[0].t, s.t), window, metric)
            return
        if not checked:
            numbers = (
                f"not observed (no report came {within:g}s or more after the app's first "
                f"report at t={reports[0].t:.1f}s)"
            )
            self._fail("track", name, headline, numbers)
            return
        last = reports[-1]
        assert last.app is not None
        self._pass(
            "track",
            name,
            f"{checked} reports followed the guest within {within:g}s (tolerance "
            f"{tolerance_mb:g} MB while moving, {ALIGNMENT_MB} MB when still); last "
            f"{last.app.reported[metric]:.0f} MB",
        )

    def _passed_through(
        self, samples: Sequence[Sample], truth: Callable[[Sample], float | None]
    ) -> list[tuple[float, float, float, float]]:
        """(from t, to t, lowest, highest) the guest's truth can have taken between two
        consecutive samples, bounded by the host's cumulative Added/Removed Memory counters
        (§4.1): from the earlier value, at most everything added on top and everything
        removed below it (a total that never falls only rises to the later value)."""
        out = []
        for a, b in itertools.pairwise(samples):
            ta, tb = truth(a), truth(b)
            if ta is None or tb is None or a.host is None or b.host is None:
                continue
            added = max(0, b.host.added_mb - a.host.added_mb)
            removed = max(0, b.host.removed_mb - a.host.removed_mb)
            if not added and not removed:
                continue
            low, high = min(ta, tb), max(ta, tb)
            if self.total_falls:
                low, high = min(low, ta - removed), max(high, ta + added)
            out.append((a.t, b.t, low, high))
        return out

    # -- bounded -------------------------------------------------------------------------
    def working_set_within_guest(self) -> None:
        """The app's working set never exceeds the memory the guest has."""
        if not self.asks("bounded"):
            return
        name = "the app stays within the guest's memory"
        headline = "the app's working set exceeded the guest's memory"
        alive = [s for s in self.timeline.samples if _alive(s)]
        for s in alive:
            if s.app and s.guest and s.guest.total_mb and s.app.working_set_mb > s.guest.total_mb:
                numbers = (
                    f"{s.app.working_set_mb:.0f} MB > the guest's {s.guest.total_mb} MB at "
                    f"t={s.t:.1f}s"
                )
                self._fail("bounded", name, headline, numbers, (s.t, s.t), [s])
                return
        if not alive:
            self._fail("bounded", name, headline, "not observed (no sample of the app running)")
            return
        peak = max(s.app.working_set_mb for s in alive if s.app)
        self._pass("bounded", name, f"peak working set {peak:.0f} MB, always within the guest")

    # -- limits --------------------------------------------------------------------------
    def limits_hold(self) -> None:
        """Each configured limit the app reports (`limits`: --dm-app-limits, or its view's)
        keeps the value of its first report through the test: memory moving under a program
        is no reason for its cache limit or buffers to change. Not applicable when no limit
        is named, or reported once (nothing to compare); a named limit never reported fails
        *not observed*."""
        if not self.asks("limits"):
            return
        name = "the app's configured limits stay put"
        headline = "the app's configured limits moved"
        if not self.limits:
            detail = "not applicable (no limit named: --dm-app-limits)"
            self.record(
                ExpectationResult(name, False, detail, behaviour="limits", applicable=False)
            )
            return
        held = []
        for metric in self.limits:
            reports = [
                s for s in self.timeline.samples
                if s.app and s.app.reported_fresh and metric in s.app.reported
            ]  # fmt: skip
            if not reports:
                seen = f"; {self.view_status()}" if self.view_status is not None else ""
                unseen = "the app's configured limits were not observed"
                self._fail("limits", name, unseen, f"no {metric} reported{seen}")
                return
            if len(reports) < 2:
                detail = f"not applicable (one report of {metric}: nothing to compare)"
                self.record(
                    ExpectationResult(name, False, detail, behaviour="limits", applicable=False)
                )
                return
            first = reports[0].app.reported[metric] if reports[0].app else 0.0
            for s in reports:
                value = s.app.reported[metric] if s.app else first
                if abs(value - first) > ALIGNMENT_MB / 2:
                    numbers = (
                        f"{metric} went from {first:g} MB (t={reports[0].t:.1f}s) to {value:g} MB "
                        f"at t={s.t:.1f}s"
                    )
                    self._fail("limits", name, headline, numbers, (reports[0].t, s.t), [s], metric)
                    return
            held.append(f"{metric} {first:g} MB ({len(reports)} reports)")
        self._pass("limits", name, "held: " + ", ".join(held))

    def bounds_honoured(self) -> None:
        """Host side: assigned memory stays within [minimum, maximum] while the VM runs."""
        name = "the host keeps assigned memory within minimum and maximum"
        for s in self.timeline.samples:
            h = s.host
            if h is None or h.state != "Running" or not h.assigned_mb:
                continue
            if not h.minimum_mb <= h.assigned_mb <= h.maximum_mb:
                numbers = (
                    f"{h.assigned_mb} MB outside [{h.minimum_mb}, {h.maximum_mb}] MB at "
                    f"t={s.t:.1f}s"
                )
                self._fail("", name, "the host let assigned memory leave its bounds", numbers,
                           (s.t, s.t), [s])  # fmt: skip
                return
        self._pass("", name, "assigned memory always within the VM's bounds")

    # -- grow / release ------------------------------------------------------------------
    def releases_after(
        self,
        event: Event,
        within: float = 10.0,
        fraction: float = MOVE_FRACTION,
        floor_mb: float = MOVE_FLOOR_MB,
    ) -> None:
        """After memory was taken or pressure came (`event`), the app's working set drops by
        at least `fraction` of the memory moved and at least `floor_mb`."""
        if self.asks("release"):
            self._working_set_moves("release", event, within, fraction, floor_mb)

    def grows_after(
        self,
        event: Event,
        within: float = 10.0,
        fraction: float = MOVE_FRACTION,
        floor_mb: float = MOVE_FLOOR_MB,
    ) -> None:
        """After memory was added (`event`), the app makes use of it: its working set grows
        by at least `fraction` of the memory added and at least `floor_mb`."""
        if self.asks("grow"):
            self._working_set_moves("grow", event, within, fraction, floor_mb)

    def _working_set_moves(
        self, behaviour: str, event: Event, within: float, fraction: float, floor_mb: float
    ) -> None:
        """Within `within` seconds after `event` ended, the app's working set moved (up for
        grow, down for release) by the amount asked, from its settled level before the event
        began (a median, so one sample mid-resize does not set it) or from its lowest (grow)
        / highest (release) level since; the app must be running to count.

        Judged on what the app could do: growth is asked of the memory that became available
        to it (the rise of the guest's available memory, its own growth counted back, or of
        its total), not of what the host added; a release is asked of what it held above its
        start-up size (half of that at most)."""
        rising = behaviour == "grow"
        name = "the app grows into added memory" if rising else "the app releases memory"
        headline = (
            "the app did not grow into added memory" if rising else "the app did not release memory"
        )
        began = event.t - float(event.data.get("seconds", 0.0))
        alive = [s for s in self.timeline.samples if _alive(s) and s.app and s.t <= began]
        if not alive:
            numbers = f"not observed (no sample of the app running before {event.message})"
            self._fail(behaviour, name, headline, numbers)
            return
        settled = [s for s in alive if s.t >= began - BASE_WINDOW_S] or alive[-1:]
        base = statistics.median(s.app.working_set_mb for s in settled if s.app)
        aim = _Aim(
            event, base, fraction, floor_mb, rising, settled,
            held=max(base - min(s.app.working_set_mb for s in alive if s.app), base / 2),
        )  # fmt: skip

        def moves() -> list[tuple[float, float, Sample]]:
            """(from, to, sample) for each live sample after the event began, `from` being the
            app's lowest (grow) or highest (release) level since: pressure at the ceiling may
            first hot-add memory the app rightly grows into before it must give some back.
            Levels are held ones (`_held_levels`): an app that resizes by building the new
            buffer before freeing the old one shows a brief peak, and the fall from that peak
            is not a release (nor the rise to it growth)."""
            extreme, out = base, []
            live = [s for s in self.timeline.samples if s.app is not None and _alive(s)]
            for s, level in _held_levels(live):
                if s.t <= began:
                    continue
                aim.see(s)
                extreme = min(extreme, level) if rising else max(extreme, level)
                out.append((extreme, level, s))
            return out

        def size(move: tuple[float, float, Sample | None]) -> float:
            return move[1] - move[0] if rising else move[0] - move[1]

        def hit() -> tuple[float, float, Sample] | None:
            return next((m for m in moves() if size(m) >= aim.need), None)

        end = self._reaction_end(event, within, rising)
        while (found := hit()) is None and self.timeline.now() < end:
            Deadline.at(min(end, self.timeline.now() + 0.1), clock=self.timeline.now).run_out()
            end = self._reaction_end(event, within, rising)
        if found is None:
            allowed = f"{within:g}s after {event.message}"
            if end > event.t + within + 0.05:
                allowed = (
                    f"{end - event.t:.1f}s after {event.message} ({within:g}s after the guest "
                    f"showed it, plus two turns of the app's own loop)"
                )
            after = self.timeline.samples_between(began, end)
            dead = next((s for s in after if s.app and s.app.exit_code is not None), None)
            if dead is not None and dead.app is not None:
                how = describe_exit(dead.app, dead.t, self.stderr(), self.output())
                numbers = f"the app is not running ({how})"
            else:
                best: tuple[float, float, Sample | None] = max(
                    moves(), key=size, default=(base, base, None)
                )
                if aim.too_little():
                    detail = f"not applicable ({aim.too_little()})"
                    self.record(
                        ExpectationResult(
                            name, False, detail, behaviour=behaviour, applicable=False
                        )
                    )
                    return
                start, to, _ = best
                if size(best) > 0:
                    verb = "grew" if rising else "dropped"
                    how = f"{verb} at most {size(best):.0f} MB ({start:.0f} → {to:.0f} MB)"
                else:
                    how = f"did not {'grow' if rising else 'drop'} (from {start:.0f} MB)"
                numbers = f"its working set {how} in the {allowed}; {aim.rule()}"
            self._fail(behaviour, name, headline, numbers, (began, end),
                       alive[-3:] + after)  # fmt: skip
            return
        start, level, sample = found
        self._pass(
            behaviour,
            name,
            f"working set {start:.0f} → {level:.0f} MB {sample.t - began:.1f}s "
            f"after {event.message} began ({aim.rule()})",
        )

    def _reaction_end(self, event: Event, within: float, rising: bool) -> float:
        """When the app must have moved by: `within` after its guest showed the move (the
        first sample at the guest total's highest (grow) or lowest (release) point in the
        `within` after the host's event: a slow guest applies a balloon over seconds), plus
        two turns of the app's own loop (the median time between its reports, at most
        `within`): an app reads, then resizes, then reports."""
        shown = event.t
        totals = [
            (s.t, total)
            for s in self.timeline.samples_between(event.t, event.t + within)
            if (total := guest_total(s)) is not None
        ]
        if totals:
            extreme = (max if rising else min)(total for _, total in totals)
            shown = next(t for t, total in totals if total == extreme)
        return shown + within + 2 * min(self._report_period(), within)

    def _report_period(self) -> float:
        """The median time between the app's reports (0 when it reported fewer than 4
        times): how long one turn of its loop takes on this guest."""
        times = [
            s.t for s in self.timeline.samples if s.app and s.app.reported and s.app.reported_fresh
        ]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return statistics.median(gaps) if len(gaps) >= 3 else 0.0


BASE_WINDOW_S = 2.0  # the app's level before an event: the median over this long
LEVEL_WINDOW_S = 1.5  # a working-set level counts once held this long (median over it)
LEVEL_MIN_SAMPLES = 3  # ... and over at least this many samples, when samples are sparse


def _held_levels(samples: Sequence[Sample]) -> Iterator[tuple[Sample, float]]:
    """Each sample with the app's working-set level held up to it: the median over the last
    LEVEL_WINDOW_S seconds (at least LEVEL_MIN_SAMPLES samples). A peak shorter than half that
    window, such as a resize that holds old and new buffers for a moment, does not move it."""
    for i, s in enumerate(samples):
        first = i
        while first > 0 and (
            s.t - samples[first - 1].t <= LEVEL_WINDOW_S or i - first + 1 < LEVEL_MIN_SAMPLES
        ):
            first -= 1
        yield (
            s,
            statistics.median_low(w.app.working_set_mb for w in samples[first : i + 1] if w.app),
        )


class _Aim:
    """How far the app's working set must move after an event, judged on what it could see.
    Growth: a share of the memory that became available to it since the event began (the
    rise of the guest's available memory, its own growth counted back, or of its total).
    Release: a share of the memory the guest was pressed for (the fall of its available
    memory, the app's own release counted back, or of its total; never more than moved), but
    no more than half of what the app held above its start-up size (its smallest sample
    before the event; at least half its working set, for an app whose cache was already
    built when it was first sampled). Without guest samples, the memory moved stands for
    both."""

    def __init__(
        self,
        event: Event,
        base: float,
        fraction: float,
        floor_mb: float,
        rising: bool,
        before: Sequence[Sample],
        held: float,
    ) -> None:
        self.moved = moved_mb(event)
        self.base, self.fraction, self.floor, self.rising = base, fraction, floor_mb, rising
        self.held = max(0.0, held)
        self.guest_seen = any(s.guest is not None for s in before)
        self.available = _median_of(before, lambda g: g.available_mb)
        self.total = _median_of(before, lambda g: g.total_mb)
        self.shown = 0.0  # the most memory offered (growth) or pressed for (release) so far

    def see(self, s: Sample) -> None:
        if s.guest is None or s.app is None:
            return
        own = s.app.working_set_mb - self.base  # what the app itself took (+) or gave (−)
        if self.rising:
            moves = [s.guest.available_mb + own - self.available, s.guest.total_mb - self.total]
        else:
            moves = [self.available - s.guest.available_mb - own, self.total - s.guest.total_mb]
        self.shown = max(self.shown, *moves)

    @property
    def asked(self) -> float:
        """The memory the app is judged against."""
        if not self.guest_seen:
            return self.moved
        return min(self.shown, self.moved) if self.moved else self.shown

    @property
    def need(self) -> float:
        if self.rising:
            return max(self.floor, self.fraction * self.asked)
        return max(self.floor, min(self.fraction * self.asked, self.held / 2))

    def too_little(self) -> str:
        """Why the app could not be asked to move at all, or ''."""
        judged_from = f"{self.floor / self.fraction:.0f} MB"
        if self.rising and self.fraction * self.asked < self.floor:
            return (
                f"only {self.asked:.0f} MB became available to the app after the hot-add; "
                f"growth is judged from {judged_from}"
            )
        if self.rising:
            return ""
        if self.held / 2 < self.floor:
            return (
                f"the app held only {self.held:.0f} MB above its start-up size: half of it is "
                f"below the {self.floor:.0f} MB a release is judged from"
            )
        if self.asked < self.floor:
            return (
                f"the guest was pressed for only {self.asked:.0f} MB (the fall of its available "
                f"memory or of its total): nothing asked the app to give memory back"
            )
        return ""

    def rule(self) -> str:
        if self.rising:
            of = f"{self.fraction:.0%} of the {self.asked:.0f} MB that became available to it"
        elif self.held / 2 < self.fraction * self.asked:
            of = f"half the {self.held:.0f} MB it held above its start-up size"
        elif self.guest_seen and self.asked < self.moved:
            of = f"{self.fraction:.0%} of the {self.asked:.0f} MB the guest was pressed for"
        else:
            of = f"{self.fraction:.0%} of the {self.moved:.0f} MB moved"
        return f"needed {self.need:.0f} MB: {of}, at least {self.floor:.0f} MB"


def _median_of(samples: Sequence[Sample], value: Callable[[GuestSample], int]) -> float:
    values = [value(s.guest) for s in samples if s.guest is not None]
    return statistics.median(values) if values else 0.0


def moved_mb(event: Event) -> float:
    """How much memory an event moved: a verified move's before→after, a load's size."""
    data: dict[str, Any] = dict(event.data)
    if "before_mb" in data and "after_mb" in data:
        return abs(float(data["after_mb"]) - float(data["before_mb"]))
    return float(data.get("size_mb", 0.0))


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if high - low < ALIGNMENT_MB else f"{low:.0f}–{high:.0f}"
