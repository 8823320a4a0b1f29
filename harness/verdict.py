"""The verdict: each test's outcome (`outcome_of`: failed, the app's, vs broken, the
infrastructure's), what one expectation found (`ExpectationResult`), and the run's verdict
(`decide`) from its records and its evidence (`RunFacts`).

The verdict is decided from one run's evidence (what it collected, how pytest ended) together
with that run's records, never from records alone: CERTIFIED needs pytest's exit 0, a record
for every collected test, no interruption, no `-k`/`-m` selection and a passed scenario for
every requested guest profile. A recorded app failure is NOT CERTIFIED whatever else happened
(no further test could change that); anything else short of CERTIFIED is INCONCLUSIVE, with
the first reason saying why.

The judging code (`harness.expect`), the plugin and the reports all read these types from
here; this module imports nothing of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

Outcome = Literal["passed", "failed", "broken", "skipped"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
VerdictStatus = Literal["certified", "not certified", "inconclusive"]
BROKEN_MEANING = "infrastructure problem, not a verdict on the app"
TOOL_PREFIX = "tool: "  # a record's `app` when the subject is a management tool
_MESSAGE_CHARS = 240
_NAMES_SHOWN = 3
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*: )")

# pytest's exit codes (pytest.ExitCode), and ours for SIGTERM (128 + 15).
PYTEST_EXITS = {
    0: "all tests passed",
    1: "some tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
    143: "stopped by SIGTERM",
}


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation checked over a timeline; the window is where it failed (timeline s)."""

    name: str
    passed: bool
    detail: str = ""
    window_start: float | None = None
    window_end: float | None = None
    # The behaviour it checks (survive, track, grow, release, bounded, limits; "" for host checks).
    behaviour: str = ""
    # False: the check could not apply ("not applicable (the app reports no total_mb)");
    # then `passed` is False too, and it is neither a pass nor a failure.
    applicable: bool = True

    @property
    def status(self) -> str:
        """passed / failed / not applicable: what a report shows."""
        if not self.applicable:
            return "not applicable"
        return "passed" if self.passed else "failed"

    @property
    def window(self) -> tuple[float, float] | None:
        if self.window_start is None and self.window_end is None:
            return None
        start = self.window_start if self.window_start is not None else self.window_end
        end = self.window_end if self.window_end is not None else self.window_start
        assert start is not None and end is not None
        return (min(start, end), max(start, end))


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reasons: tuple[str, ...]
    scope: str = ""  # "partial: N of M scenarios" when a selection ran, else ""

    @property
    def headline(self) -> str:
        status = self.status.capitalize()
        return f"{status} ({self.scope})" if self.scope else status


@dataclass(frozen=True)
class RunFacts:
    """Everything known about how a run went, besides its records."""

    run_id: str | None = None
    started: float | None = None
    guest_profiles: tuple[str, ...] = ()
    selected: tuple[str, ...] | None = None  # None: no process finished collecting
    deselected: int = 0
    pytest_exit: int | None = None  # None: nobody saw pytest end
    interrupted: bool = False
    finished: float | None = None
    problem: str = ""  # why the run could not start (a usage error), as `dmh` saw it
    interruption: str = ""  # what interrupted it (Ctrl-C, SIGTERM, -x), when known

    @property
    def available(self) -> int | None:
        """Tests the suite offered before any `-k`/`-m` selection."""
        return None if self.selected is None else len(self.selected) + self.deselected

    @property
    def partial(self) -> bool:
        return self.deselected > 0

    @property
    def scope(self) -> str:
        """'partial: N of M scenarios' for a selection, '' otherwise."""
        if not self.partial or self.selected is None:
            return ""
        return f"partial: {len(self.selected)} of {self.available} scenarios"


class Judged(Protocol):
    """What the verdict reads of a test's result record (`harness.report.model.TestRecord`)."""

    @property
    def nodeid(self) -> str: ...

    @property
    def scenario(self) -> str: ...

    @property
    def guest_os(self) -> str: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def message(self) -> str: ...

    @property
    def app(self) -> str: ...


def decide(records: Sequence[Judged], facts: RunFacts) -> Verdict:
    """The verdict of one run from its records and its facts; see the module docstring."""
    expected = facts.selected
    own = [r for r in records if expected is None or r.nodeid in expected]
    failed = [r for r in own if r.outcome == "failed"]
    broken = [r for r in own if r.outcome == "broken"]
    gaps = _gaps(records, facts)
    broken_reasons = tuple(
        f"{_where(r)}: broken ({BROKEN_MEANING}){_first_line(r.message)}" for r in broken
    )
    if failed:
        failures = tuple(f"{_where(r)}: failed{_first_line(r.message)}" for r in failed)
        return Verdict("not certified", failures + gaps + broken_reasons, facts.scope)
    if gaps or broken_reasons:
        return Verdict("inconclusive", gaps + broken_reasons, facts.scope)
    passed = [r for r in own if r.outcome == "passed"]
    skipped = len(own) - len(passed)
    if not passed:
        return Verdict("inconclusive", (f"all {skipped} tests were skipped: nothing ran",))
    profiles, judged_on = judged_profiles(own, facts)
    missing_profiles = [p for p in profiles if not any(r.guest_os == p for r in passed)]
    if missing_profiles:
        return Verdict(
            "inconclusive",
            tuple(f"no scenario passed for guest profile {p}" for p in missing_profiles),
            facts.scope,
        )
    reason = f"all {len(passed)} tests that ran passed"
    if skipped:
        reason += f" ({skipped} skipped)"
    reason += judged_on
    if facts.partial:
        return Verdict(
            "inconclusive",
            (f"{facts.scope} (a -k/-m selection): {reason}, but a subset is not a certification",),
            facts.scope,
        )
    return Verdict("certified", (reason,))


def judged_profiles(records: Sequence[Judged], facts: RunFacts) -> tuple[tuple[str, ...], str]:
    """The guest profiles a run is judged on, and what to add to its reason when that is not
    simply the profiles requested. A management-tool run (every record names a `tool: `) is
    judged on the profiles it ran: the tool reads the host, so its suite runs one profile
    whatever `--dm-guest-os` asks (issue 22)."""
    tools = [r for r in records if r.app.startswith(TOOL_PREFIX)]
    ran = tuple(sorted({r.guest_os for r in tools if r.guest_os}))
    if not records or len(tools) != len(records) or not ran:
        return facts.guest_profiles, ""
    return ran, f"; a management tool, judged on the guest profile its suite ran: {', '.join(ran)}"


def _gaps(records: Sequence[Judged], facts: RunFacts) -> tuple[str, ...]:
    """Why this run's evidence falls short of a whole, finished run, most telling first."""
    if facts.problem:
        return (f"the run did not start: {facts.problem}",)
    if facts.run_id is None and facts.selected is None:
        return (
            "no run evidence next to the records: cannot tell which tests should have run "
            f"({describe_exit(facts.pytest_exit)})",
        )
    expected = facts.selected
    if expected is None:
        return (
            f"the run ended before pytest finished collecting ({describe_exit(facts.pytest_exit)})",
        )
    recorded = {r.nodeid for r in records}
    missing = [n for n in expected if n not in recorded]
    foreign = sorted(recorded - set(expected))
    done = len(expected) - len(missing)
    gaps: list[str] = []
    if facts.interrupted:
        how = f" ({facts.interruption})" if facts.interruption else ""
        gaps.append(f"interrupted after {done} of {len(expected)} tests{how}")
    if not expected:
        available = facts.available or 0
        gaps.append(
            f"no tests were selected: 0 of {available} scenarios ({describe_exit(facts.pytest_exit)})"
        )
    elif missing and not facts.interrupted:
        gaps.append(
            f"{len(missing)} of {len(expected)} tests have no record (the process running them "
            f"ended before they finished): {_names(missing)}"
        )
    if foreign:
        gaps.append(
            f"{len(foreign)} records are of tests this run did not collect: {_names(foreign)}"
        )
    if expected and facts.pytest_exit != 0 and not (facts.interrupted or missing):
        failed = any(r.outcome in ("failed", "broken") for r in records)
        if not (facts.pytest_exit == 1 and failed):  # exit 1 is explained by those records
            gaps.append(f"{describe_exit(facts.pytest_exit)} although every test has a record")
    return tuple(gaps)


def describe_exit(code: int | None) -> str:
    """'pytest exit 5: no tests collected'; a negative code is the signal that killed it."""
    if code is None:
        return "pytest's exit status is unknown"
    if code < 0:
        return f"pytest was killed by signal {-code}"
    meaning = PYTEST_EXITS.get(code)
    return f"pytest exit {code}" + (f": {meaning}" if meaning else "")


FailureKind = Literal["failed", "broken"]
PHASES = ("setup", "call", "teardown")


@dataclass(frozen=True)
class Phase:
    """One phase of a test (setup, call or teardown), as its outcome needs it."""

    when: str
    status: Literal["passed", "failed", "skipped"]
    message: str = ""  # a failure's first line, or why it was skipped
    kind: FailureKind = "broken"  # whose failure a failed phase is
    duration_s: float = 0.0


def failure_kind(when: str, error: BaseException | None) -> FailureKind:
    """An AssertionError in the test body (ExpectationFailed is one) is the app's failure;
    anything else, or any failure in setup or teardown, is the infrastructure's."""
    return "failed" if when == "call" and isinstance(error, AssertionError) else "broken"


def outcome_of(phases: Mapping[str, Phase]) -> tuple[Outcome, str]:
    """passed / failed (the app misbehaved) / broken (infrastructure) / skipped, and why:
    the first phase, in order, that was skipped or failed decides."""
    for when in PHASES:
        phase = phases.get(when)
        if phase is None or phase.status == "passed":
            continue
        if phase.status == "skipped":
            return "skipped", phase.message
        return phase.kind, phase.message.splitlines()[0] if phase.message else ""
    return "passed", ""


def _where(record: Judged) -> str:
    return f"{record.scenario} on {record.guest_os}" if record.guest_os else record.scenario


def _names(nodeids: Sequence[str]) -> str:
    shown = ", ".join(n.rsplit("::", 1)[-1] for n in nodeids[:_NAMES_SHOWN])
    more = len(nodeids) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    # "harness.errors.LeverError: ..." reads better as "LeverError: ..." in a verdict.
    line = _QUALIFIED.sub(r"\1", line)
    if len(line) > _MESSAGE_CHARS:
        line = line[: _MESSAGE_CHARS - 1] + "…"
    return f": {line}" if line else ""
