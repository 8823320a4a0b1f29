"""The app's view of memory through its own interface (`--dm-app-view`): a command run in the
guest once per interval whose output says what the program believes, so a program nobody
changed (Redis, a JVM, memcached) is judged by the same `track` check as an app that prints
metric lines.

`--dm-app-view` takes a built-in recipe by name, with its placeholders set as KEY=VALUE words
(`redis`, `redis port=6380`), or a command line of one's own (`my-cli --pid {pid} stats`)
whose output is JSON lines (`{"metric": "total_mb", "value": 4096}`) or matches the patterns
of `--dm-app-view-pattern`. `{pid}` is the app's process id as the guest sees it.

A pattern is a regex with one value group whose name gives the unit: `mb` (or `value`),
`kb`, `bytes` or `pages` (4 KiB); the metric is its `metric` group, or `total_mb` when it has
none. `total_mb` is what `track` compares with the guest's total memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import SettingError
from harness.probe import JsonLinesProbe

if TYPE_CHECKING:
    from harness.hyperv.guest import GuestProcess

MB = 1024 * 1024
UNITS = {"mb": 1.0, "value": 1.0, "kb": 1 / 1024, "bytes": 1 / MB, "pages": 4096 / MB}
MARK = "--- dmh run ended, exit "  # the guest-side runner's line after each run


@dataclass(frozen=True)
class ViewPattern:
    """One regex over a view's output, giving one metric in MB."""

    pattern: str
    metric: str = "total_mb"

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern, re.MULTILINE)
        except re.error as exc:
            raise SettingError(
                "--dm-app-view-pattern", repr(self.pattern), f"is no regex ({exc})"
            ) from None
        units = [g for g in compiled.groupindex if g in UNITS]
        if len(units) != 1:
            raise SettingError(
                "--dm-app-view-pattern",
                repr(self.pattern),
                "must have exactly one value group named for its unit: "
                "(?P<mb>…), (?P<kb>…), (?P<bytes>…) or (?P<pages>…)",
            )

    def find(self, text: str) -> dict[str, float]:
        compiled = re.compile(self.pattern, re.MULTILINE)
        found: dict[str, float] = {}
        for match in compiled.finditer(text):
            groups = match.groupdict()
            unit = next(g for g in groups if g in UNITS and groups[g] is not None)
            try:
                value = float(groups[unit].replace(",", ""))
            except ValueError:
                continue
            found[groups.get("metric") or self.metric] = round(value * UNITS[unit], 3)
        return found


@dataclass(frozen=True)
class Recipe:
    """A built-in view: the command, its placeholders' defaults, what it reads, and what its
    metrics mean (shown in reports and the catalogue)."""

    name: str
    command: str
    patterns: tuple[ViewPattern, ...]
    means: str
    every: float = 1.0
    defaults: Mapping[str, str] = field(default_factory=dict)
    limits: tuple[str, ...] = ()  # metrics that are settings: they stay put (`limits`)


RECIPES = {
    r.name: r
    for r in (
        Recipe(
            "redis",
            "redis-cli -h 127.0.0.1 -p {port} INFO memory",
            (
                # server.system_memory_size: zmalloc_get_memory_size() (sysconf
                # _SC_PHYS_PAGES), read once in initServer() (server.c) and shown ever after.
                ViewPattern(r"^total_system_memory:(?P<bytes>\d+)", "total_mb"),
                ViewPattern(r"^maxmemory:(?P<bytes>\d+)", "maxmemory_mb"),
                ViewPattern(r"^used_memory:(?P<bytes>\d+)", "used_mb"),
            ),
            "total_mb: INFO memory's total_system_memory (the physical memory Redis read at "
            "start); maxmemory_mb: the configured limit (0: none); used_mb: its data",
            defaults={"port": "6379"},
            limits=("maxmemory_mb",),
        ),
        Recipe(
            "memcached",
            "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {port})); "
            "s.sendall(b'stats\\r\\nquit\\r\\n'); print(s.makefile(errors='replace').read())\"",
            (
                ViewPattern(r"^STAT limit_maxbytes (?P<bytes>\d+)", "limit_mb"),
                ViewPattern(r"^STAT bytes (?P<bytes>\d+)", "used_mb"),
            ),
            "limit_mb: stats' limit_maxbytes (its -m setting, which should stay put); used_mb: "
            "the bytes it stores. It reports no view of the guest's total, so track does not "
            "apply",
            defaults={"port": "11211"},
            limits=("limit_mb",),
        ),
        Recipe(
            "postgres",
            "psql -h 127.0.0.1 -p {port} -U postgres -d postgres -Atc \"SELECT name || ' ' || "
            "pg_size_bytes(current_setting(name)) FROM pg_settings WHERE name IN "
            "('shared_buffers', 'effective_cache_size', 'work_mem')\"",
            (
                ViewPattern(r"^shared_buffers (?P<bytes>\d+)", "shared_buffers_mb"),
                ViewPattern(r"^effective_cache_size (?P<bytes>\d+)", "effective_cache_mb"),
                ViewPattern(r"^work_mem (?P<bytes>\d+)", "work_mem_mb"),
            ),
            "shared_buffers_mb, effective_cache_mb, work_mem_mb: its memory settings "
            "(pg_settings), which it sizes from its configuration, never from the machine",
            defaults={"port": "5432"},
            limits=("shared_buffers_mb", "effective_cache_mb", "work_mem_mb"),
        ),
        Recipe(
            "jvm",
            "jcmd {pid} VM.info",
            (
                # HotSpot's os::physical_memory() and os::available_memory() (VM.info "Memory:").
                ViewPattern(r"^Memory: \d+k page, physical (?P<kb>\d+)k", "total_mb"),
                ViewPattern(r"^Memory: \d+k page, physical \d+k\((?P<kb>\d+)k free\)", "free_mb"),
                ViewPattern(r"^\s*garbage-first heap\s+total (?P<kb>\d+)K", "heap_committed_mb"),
                ViewPattern(r"^\s*def new generation\s+total (?P<kb>\d+)K", "young_committed_mb"),
            ),
            "total_mb: the physical memory HotSpot reports in VM.info (what its ergonomics "
            "size the heap from); free_mb: its free figure; heap_committed_mb: the heap it holds",
            every=2.0,  # each jcmd starts a JVM: seconds of CPU on a small guest
        ),
    )
}


@dataclass(frozen=True)
class AppView:
    """A view, ready to start: the command with its placeholders but `{pid}` filled (the
    guest-side runner, suites/apps/_repeat.py, fills that with the app's process id)."""

    label: str  # as reports show it: the recipe's name and settings, or the command
    command: str
    patterns: tuple[ViewPattern, ...]  # none: JSON lines
    every: float
    means: str = ""
    limits: tuple[str, ...] = ()  # the recipe's settings (`limits` checks they stay put)

    def parse(self, text: str) -> dict[str, float]:
        if not self.patterns:
            return JsonLinesProbe().parse(text.splitlines())
        found: dict[str, float] = {}
        for pattern in self.patterns:
            found.update(pattern.find(text))
        return found


_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_WORD = re.compile(r"^(?P<key>[a-z_][a-z0-9_]*)=(?P<value>[A-Za-z0-9_.:/-]+)$")


def parse_view(text: str, patterns: Iterable[str] = ()) -> AppView | None:
    """`--dm-app-view` (and `--dm-app-view-pattern`) as given: a recipe by name with KEY=VALUE
    settings, or a command of one's own. SettingError names the value and the rule."""
    text = text.strip()
    if not text:
        if list(patterns):
            raise SettingError(
                "--dm-app-view-pattern", repr(list(patterns)), "needs --dm-app-view COMMAND"
            )
        return None
    words = text.split()
    recipe = RECIPES.get(words[0])
    if recipe is not None and all(_WORD.match(w) for w in words[1:]):
        if list(patterns):
            raise SettingError(
                "--dm-app-view-pattern",
                repr(list(patterns)),
                f"applies to a command of one's own, not to the built-in {recipe.name!r} view",
            )
        values = dict(recipe.defaults)
        for word in words[1:]:
            key, value = word.split("=", 1)
            if key not in recipe.defaults:
                raise SettingError(
                    "--dm-app-view",
                    repr(text),
                    f"{key!r} is no setting of the {recipe.name!r} view "
                    f"(it has: {', '.join(recipe.defaults) or 'none'})",
                )
            values[key] = value
        command = recipe.command
        for key, value in values.items():
            command = command.replace("{" + key + "}", value)
        return AppView(text, command, recipe.patterns, recipe.every, recipe.means, recipe.limits)
    fields = set(_PLACEHOLDER.findall(text))
    if fields - {"pid"}:
        raise SettingError(
            "--dm-app-view",
            repr(text),
            f"may use only the placeholder {{pid}} (found {', '.join(sorted(fields))}); "
            f"built-in views: {', '.join(RECIPES)}",
        )
    return AppView(text, text, tuple(ViewPattern(p) for p in patterns), 1.0)


class Runs:
    """The guest-side runner's output (suites/apps/_repeat.py) split into complete runs: each
    run's output and then MARK with its exit code, a line of its own."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._partial = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """The runs `text` completes: (output, exit code) each."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        done = []
        for line in lines:
            if line.startswith(MARK):
                done.append(("\n".join(self._lines), line[len(MARK) :].strip()))
                self._lines = []
            else:
                self._lines.append(line)
        return done


class ViewReader:
    """Reads an app view's runs from its process in the guest, at most once per interval:
    the values of each complete run, and how many runs gave nothing (shown, never taken as
    tracking)."""

    def __init__(self, view: AppView, process: GuestProcess, clock: Callable[[], float]) -> None:
        self.view = view
        self.process = process
        self.clock = clock
        self.runs = 0
        self.empty_runs = 0
        self.last_empty = ""  # the last run that gave nothing: its output and exit code
        self._runs = Runs()
        self._next = 0.0

    def read(self) -> dict[str, float]:
        """The values of the runs completed since the last read ({} if none, or too soon)."""
        now = self.clock()
        if now < self._next:
            return {}
        self._next = now + self.view.every
        found: dict[str, float] = {}
        for text, code in self._runs.feed(self.process.feed(self.process.fetch())):
            values = self.view.parse(text)
            self.runs += 1
            if values:
                found.update(values)
            else:
                self.empty_runs += 1
                self.last_empty = f"{text.strip()[-300:] or '(no output)'} (exit {code})"
        return found

    def status(self) -> str:
        """What the view gave, for reports and for a check that found no metric in it."""
        if not self.runs:
            return f"the app view `{self.view.label}` completed no run"
        if self.empty_runs == self.runs:
            return (
                f"the app view `{self.view.label}` ran {self.runs} times and gave nothing it "
                f"reads; last: {self.last_empty}"
            )
        return f"the app view `{self.view.label}` gave values in {self.runs - self.empty_runs} of {self.runs} runs"
