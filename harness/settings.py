"""Hyper-V memory settings and their rules: what a VM may be set to, and what may change while
it runs, per host version. One place, used by the client (to refuse early) and the emulator
(to answer as Hyper-V would). Facts from reference §2.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from harness.errors import RuntimeChangeError, SettingError
from harness.units import GB, MB, TB, format_size, parse_size


class HostVersion(enum.Enum):
    """Hyper-V host generations whose DM rules differ."""

    V2008R2SP1 = "2008R2SP1"
    V2012 = "2012"
    V2012R2 = "2012R2"
    V2016 = "2016"
    V2019 = "2019"
    V2022 = "2022"

    @classmethod
    def parse(cls, value: str | HostVersion) -> HostVersion:
        if isinstance(value, HostVersion):
            return value
        text = str(value).upper().replace(" ", "").replace("WS", "").removeprefix("V")
        for member in cls:
            if member.value == text:
                return member
        allowed = ", ".join(m.value for m in cls)
        raise SettingError("host version", value, f"must be one of {allowed}")

    @property
    def is_2016_or_later(self) -> bool:
        return self in (HostVersion.V2016, HostVersion.V2019, HostVersion.V2022)


MINIMUM_FLOOR = 32 * MB  # §2.2
ALIGNMENT = 2 * MB  # §2.1: sizes must be even MB
BUFFER_RANGE = (5, 2000)  # §2.2, percent
PRIORITY_RANGE = (0, 100)  # §2.2
DEFAULT_BUFFER = 20
DEFAULT_PRIORITY = 50
_ORDER = "minimum ≤ startup ≤ maximum, §2.2"
SIZE_FIELDS = ("startup", "minimum", "maximum")  # the settings that are byte counts


def max_memory_per_vm(version: HostVersion, generation: int = 2) -> int:
    """Per-VM maximum (§2.2): 64 GB on 2008 R2 SP1, 1 TB on 2012/R2, 12 TB Gen2 on 2016+."""
    if version is HostVersion.V2008R2SP1:
        return 64 * GB
    if version.is_2016_or_later and generation == 2:
        return 12 * TB
    return 1 * TB


@dataclass(frozen=True)
class MemorySettings:
    """A VM's memory configuration in bytes, as Get-VMMemory reports it (§1.2)."""

    dynamic: bool = True
    startup: int = 1 * GB
    minimum: int = 512 * MB
    maximum: int = 1 * TB
    buffer: int = DEFAULT_BUFFER
    priority: int = DEFAULT_PRIORITY

    @classmethod
    def build(
        cls,
        *,
        dynamic: bool = True,
        startup: str | int = "1GB",
        minimum: str | int | None = None,
        maximum: str | int | None = None,
        buffer: int = DEFAULT_BUFFER,
        priority: int = DEFAULT_PRIORITY,
    ) -> MemorySettings:
        """Settings from user-written sizes; minimum/maximum default to startup (static-like)."""
        start = parse_size(startup, "startup")
        return cls(
            dynamic=dynamic,
            startup=start,
            minimum=start if minimum is None else parse_size(minimum, "minimum"),
            maximum=start if maximum is None else parse_size(maximum, "maximum"),
            buffer=buffer,
            priority=priority,
        )

    def with_changes(self, **changes: object) -> MemorySettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def validate(self, version: HostVersion = HostVersion.V2022, generation: int = 2) -> None:
        """Raise SettingError naming the field, the value and the rule that it breaks."""
        for name in SIZE_FIELDS:
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int):
                raise SettingError(name, size, "a size is an integer number of bytes")
            if size % ALIGNMENT:
                raise SettingError(
                    name, _show(size), "memory sizes must be 2 MB aligned (even MB, §2.1)"
                )
        _check_floor("startup", self.startup)
        _check_ceiling("startup", self.startup, version, generation)
        _check_range("buffer", self.buffer, BUFFER_RANGE, "percent")
        _check_range("priority", self.priority, PRIORITY_RANGE, "")
        if not self.dynamic:
            return  # minimum and maximum are kept but unused for static memory
        _check_floor("minimum", self.minimum)
        if self.minimum > self.startup:
            raise SettingError(
                "minimum",
                _show(self.minimum),
                f"must not exceed startup {_show(self.startup)} ({_ORDER})",
            )
        if self.maximum < self.startup:
            raise SettingError(
                "maximum",
                _show(self.maximum),
                f"must be at least startup {_show(self.startup)} ({_ORDER})",
            )
        _check_ceiling("maximum", self.maximum, version, generation)


# One table from a MemorySettings field to the Set-VMMemory parameter that carries it (§1.1).
# Client and emulator both use it; nothing else spells these parameter names.
SET_VMMEMORY_PARAMETERS: dict[str, str] = {
    "dynamic": "DynamicMemoryEnabled",
    "startup": "StartupBytes",
    "minimum": "MinimumBytes",
    "maximum": "MaximumBytes",
    "buffer": "Buffer",
    "priority": "Priority",
}


@dataclass(frozen=True)
class MemoryChange:
    """Which memory settings a change sets; a field left None stays as it is."""

    dynamic: bool | None = None
    startup: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    buffer: int | None = None
    priority: int | None = None

    @classmethod
    def full(cls, memory: MemorySettings) -> MemoryChange:
        """Every setting of `memory`; for static memory, minimum/maximum/buffer are left out
        since Set-VMMemory only takes them with Dynamic Memory enabled."""
        if not memory.dynamic:
            return cls(dynamic=False, startup=memory.startup, priority=memory.priority)
        return cls(**{name: getattr(memory, name) for name in SET_VMMEMORY_PARAMETERS})

    def fields(self) -> dict[str, bool | int]:
        """The fields this change sets, by MemorySettings name."""
        return {
            name: value
            for name in SET_VMMEMORY_PARAMETERS
            if (value := getattr(self, name)) is not None
        }

    def applied_to(self, memory: MemorySettings) -> MemorySettings:
        return replace(memory, **self.fields())  # type: ignore[arg-type]

    def parameters(self) -> dict[str, bool | int]:
        """The Set-VMMemory parameters that carry this change."""
        return {SET_VMMEMORY_PARAMETERS[name]: value for name, value in self.fields().items()}

    def shown(self) -> dict[str, bool | int | str]:
        """The fields this change sets as a reader wants them: sizes as "2GB"."""
        return {name: _shown(name, value) for name, value in self.fields().items()}


def _show(size: int) -> str:
    return format_size(size) if size >= 0 else str(size)


def _shown(name: str, value: bool | int) -> bool | int | str:
    return _show(value) if name in SIZE_FIELDS else value


def _check_floor(name: str, size: int) -> None:
    if size < MINIMUM_FLOOR:
        raise SettingError(name, _show(size), "must be at least 32MB (§2.2)")


def _check_ceiling(name: str, size: int, version: HostVersion, generation: int) -> None:
    ceiling = max_memory_per_vm(version, generation)
    if size > ceiling:
        raise SettingError(
            name,
            _show(size),
            f"must not exceed {format_size(ceiling)} per VM on Hyper-V {version.value}"
            f" generation {generation} (§2.2)",
        )


def _check_range(name: str, value: object, bounds: tuple[int, int], unit: str) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise SettingError(name, value, f"must be an integer from {low} to {high}{suffix} (§2.2)")


class Change(enum.Enum):
    """How a setting may change while the VM runs."""

    NEVER = "cannot change while the VM runs"
    INCREASE = "can only be increased while the VM runs"
    DECREASE = "can only be decreased while the VM runs"
    ANY = "can change while the VM runs"


# Reference §2.3. For DM VMs on 2016 and later the reference marks the rules as unknown
# (§8.1); ASSUMPTION: they follow the 2012 R2 rules. This is the one place that says so.
_RULES_2012: dict[str, Change] = {
    "dynamic": Change.NEVER,
    "startup": Change.NEVER,
    "maximum": Change.INCREASE,
    "minimum": Change.DECREASE,
    "buffer": Change.ANY,
    "priority": Change.ANY,
}
# 2008 R2 SP1: "memory configuration of a running VM cannot be changed" [S38]; buffer and
# priority are unconfirmed (§8.2), so the conservative answer is "no".
_RULES_2008R2SP1: dict[str, Change] = dict.fromkeys(_RULES_2012, Change.NEVER)
_RULES_2016_DM_ASSUMED = _RULES_2012
# Static-memory VMs on 2016+ have Runtime Memory Resize: startup changes both ways (§2.3).
_RULES_2016_STATIC: dict[str, Change] = {**_RULES_2012, "startup": Change.ANY}


def runtime_rules(version: HostVersion, dynamic: bool) -> dict[str, Change]:
    """The §2.3 row for a running VM on this host version."""
    if version is HostVersion.V2008R2SP1:
        return _RULES_2008R2SP1
    if version.is_2016_or_later:
        return _RULES_2016_DM_ASSUMED if dynamic else _RULES_2016_STATIC
    if not dynamic:
        return {**_RULES_2012, "startup": Change.NEVER}
    return _RULES_2012


def check_runtime_change(old: MemorySettings, new: MemorySettings, version: HostVersion) -> None:
    """Refuse a change to a running VM that the host version does not allow (§2.3)."""
    rules = runtime_rules(version, old.dynamic)
    for name, rule in rules.items():
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if not old.dynamic and name in ("minimum", "maximum", "buffer"):
            continue  # unused while memory is static; Hyper-V stores them
        allowed = (
            rule is Change.ANY
            or (rule is Change.INCREASE and after > before)
            or (rule is Change.DECREASE and after < before)
        )
        if not allowed:
            shown = f"{_shown(name, after)} (was {_shown(name, before)})"
            raise RuntimeChangeError(name, shown, rule.value, version.value)
