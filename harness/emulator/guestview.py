"""What an emulated guest OS shows its programs: the memory profiles of Windows and Linux
guests and the view (meminfo, Windows counters) built from the guest's measured memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.emulator.balancer import GuestModel, linux_balloon_floor_mb
from harness.errors import SettingError
from harness.units import MB

# Counter names in the guest's counters file (Windows spelling, §4.3/§4.4).
AVAILABLE_MBYTES = r"\Memory\Available MBytes"
AVAILABLE_BYTES = r"\Memory\Available Bytes"
COMMITTED_BYTES = r"\Memory\Committed Bytes"
COMMIT_LIMIT = r"\Memory\Commit Limit"
COMMITTED_IN_USE = r"\Memory\% Committed Bytes In Use"
TOTAL_PHYSICAL = "Win32_ComputerSystem.TotalPhysicalMemory"  # bytes
TOTAL_VISIBLE_KB = "Win32_OperatingSystem.TotalVisibleMemorySize"  # KB
FREE_PHYSICAL_KB = "Win32_OperatingSystem.FreePhysicalMemory"  # KB
MAXIMUM_MEMORY = r"\Hyper-V Dynamic Memory Integration Service\Maximum Memory, Mbytes"


@dataclass(frozen=True)
class GuestView:
    """The guest's own memory figures (MB), as software inside the VM reads them."""

    os_name: str
    total_mb: int  # what the OS says it has: Windows high-water mark, Linux MemTotal
    available_mb: int
    free_mb: int
    committed_mb: int
    commit_limit_mb: int
    max_memory_mb: int  # DM Maximum as the integration service reports it (§4.3)
    assigned_mb: int
    ballooned_mb: int  # held by the balloon driver: counted as in use (§4.4, §5.4)
    cached_mb: int = 0  # page cache (Windows standby list): reclaimable
    anon_mb: int = 0  # resident private memory of the OS and its processes

    def counters(self) -> Mapping[str, float]:
        """Windows counter names → values (the counters file)."""
        committed = self.committed_mb * MB
        limit = self.commit_limit_mb * MB
        return {
            AVAILABLE_MBYTES: self.available_mb,
            AVAILABLE_BYTES: self.available_mb * MB,
            COMMITTED_BYTES: committed,
            COMMIT_LIMIT: limit,
            COMMITTED_IN_USE: round(100 * committed / limit, 2) if limit else 0.0,
            TOTAL_PHYSICAL: self.total_mb * MB,
            TOTAL_VISIBLE_KB: self.total_mb * 1024,
            FREE_PHYSICAL_KB: self.free_mb * 1024,
            MAXIMUM_MEMORY: self.max_memory_mb,
        }

    def meminfo(self) -> str:
        """/proc/meminfo text (kB). Every line has a fixed width, so successive versions have
        the same length and an in-place rewrite never leaves a stale tail."""
        total, free, avail = self.total_mb * 1024, self.free_mb * 1024, self.available_mb * 1024
        cached, anon = self.cached_mb * 1024, self.anon_mb * 1024
        active_file = cached // 2
        rows: list[tuple[str, int, bool]] = [
            ("MemTotal", total, True),
            ("MemFree", free, True),
            ("MemAvailable", avail, True),
            ("Buffers", 0, True),
            ("Cached", cached, True),
            ("SwapCached", 0, True),
            ("Active", anon + active_file, True),
            ("Inactive", cached - active_file, True),
            ("Active(anon)", anon, True),
            ("Inactive(anon)", 0, True),
            ("Active(file)", active_file, True),
            ("Inactive(file)", cached - active_file, True),
            ("Unevictable", self.ballooned_mb * 1024, True),
            ("Mlocked", 0, True),
            ("SwapTotal", 0, True),
            ("SwapFree", 0, True),
            ("Dirty", 0, True),
            ("Writeback", 0, True),
            ("AnonPages", anon, True),
            ("Mapped", 0, True),
            ("Shmem", 0, True),
            ("KReclaimable", 0, True),
            ("Slab", 0, True),
            ("SReclaimable", 0, True),
            ("SUnreclaim", 0, True),
            ("KernelStack", 0, True),
            ("PageTables", 0, True),
            ("CommitLimit", self.commit_limit_mb * 1024, True),
            ("Committed_AS", self.committed_mb * 1024, True),
            ("VmallocTotal", 34359738367, True),
            ("VmallocUsed", 0, True),
            ("VmallocChunk", 0, True),
            ("HugePages_Total", 0, False),
            ("HugePages_Free", 0, False),
            ("HugePages_Rsvd", 0, False),
            ("HugePages_Surp", 0, False),
            ("Hugepagesize", 2048, True),
        ]
        return "".join(
            f"{name + ':':<16}{value:>14}{' kB' if kb else '   '}\n" for name, value, kb in rows
        )

    def node_meminfo(self, node: int = 0) -> str:
        """/sys/devices/system/node/node<N>/meminfo: one node holding all of the guest's
        memory (DM and virtual NUMA exclude each other, §1.1). Fixed-width like meminfo."""
        total, free = self.total_mb * 1024, self.free_mb * 1024
        cached, anon = self.cached_mb * 1024, self.anon_mb * 1024
        rows = [
            ("MemTotal", total),
            ("MemFree", free),
            ("MemUsed", total - free),
            ("Active", anon + cached // 2),
            ("Inactive", cached - cached // 2),
            ("FilePages", cached),
            ("AnonPages", anon),
            ("Shmem", 0),
        ]
        return "".join(f"Node {node} {name + ':':<15}{value:>14} kB\n" for name, value in rows)


@dataclass(frozen=True)
class Memory:
    """What the guest's own processes hold (MB), measured; the idle OS is added by the
    profile."""

    commit_mb: int = 0  # private writable mappings (what Committed_AS / Committed Bytes count)
    anon_mb: int = 0  # resident private pages
    cache_mb: int = 0  # page cache the processes caused


class GuestProfile(GuestModel, Protocol):
    """A guest OS: how it reports demand to the host and what it shows its programs."""

    @property
    def os_name(self) -> str: ...

    @property
    def baseline_commit_mb(self) -> int:
        """Commit of the idle OS, before any process the harness starts."""
        ...

    @property
    def page_cache_mb(self) -> int:
        """Page cache of the idle OS (reclaimable)."""
        ...

    def view(
        self,
        committed_mb: int,
        assigned_mb: int,
        high_water_mb: int,
        maximum_mb: int,
        *,
        anon_mb: int | None = None,
        cache_mb: int = 0,
    ) -> GuestView: ...

    def memory_limit_mb(self, view: GuestView, fixed_mb: int) -> tuple[int, int, int | None]:
        """(what the guest's processes may hold together, the limit each process's
        container shows, a soft limit or None) for the guest's memory cgroup."""
        ...


def _check_profile(baseline: int, other: int, other_name: str) -> None:
    if baseline < 0:
        raise SettingError("baseline_commit_mb", baseline, "must be ≥ 0")
    if other < 0:
        raise SettingError(other_name, other, "must be ≥ 0")


def _available_mb(committed_mb: int, assigned_mb: int) -> int:
    # The host-side estimate (balancer counters): ballooned pages are never available.
    return max(0, assigned_mb - committed_mb)


@dataclass(frozen=True)
class Watermarks:
    """Linux's zone watermarks and the file pages a working system cannot drop (MB)."""

    min_mb: int
    low_mb: int
    high_mb: int
    cache_floor_mb: int

    @classmethod
    def for_total(cls, total_mb: int) -> Watermarks:
        # min_free_kbytes = sqrt(16 × lowmem kB), within 128 kB … 256 MB (mm/page_alloc.c);
        # low = min × 5/4, high = min × 3/2.
        min_kb = min(262144, max(128, math.isqrt(16 * total_mb * 1024)))
        min_mb = max(1, -(-min_kb // 1024))
        # The hot file pages (program text, libraries) stay; reclaim stops at about this.
        return cls(min_mb, max(1, min_mb * 5 // 4), max(1, min_mb * 3 // 2), max(8, total_mb // 64))


def _view(
    profile: GuestProfile,
    committed_mb: int,
    assigned_mb: int,
    total_mb: int,
    commit_limit_mb: int,
    maximum_mb: int,
    anon_mb: int | None,
    cache_mb: int,
) -> GuestView:
    """Like a kernel: anonymous memory is what it is; page cache fills what is left and is
    given back under pressure down to its floor; MemAvailable is the kernel's estimate
    (si_mem_available), so it approaches a floor but is not 0 while cache is left."""
    anon = committed_mb if anon_mb is None else anon_mb
    marks = Watermarks.for_total(total_mb)
    room = assigned_mb - anon
    wanted = profile.page_cache_mb + cache_mb
    cached = max(0, min(wanted, max(marks.cache_floor_mb, room - marks.high_mb)))
    free = max(marks.min_mb, room - cached)
    if profile.os_name == "windows":
        # Windows' Available = standby (its cache) + free + zero lists; so is FreePhysicalMemory.
        available = free + cached
        free = available
    else:
        available = max(0, free - marks.low_mb + cached - min(cached // 2, marks.low_mb))
    return GuestView(
        os_name=profile.os_name,
        total_mb=total_mb,
        available_mb=available,
        free_mb=free,
        committed_mb=committed_mb,
        commit_limit_mb=commit_limit_mb,
        max_memory_mb=maximum_mb,
        assigned_mb=assigned_mb,
        ballooned_mb=total_mb - assigned_mb,
        cached_mb=cached,
        anon_mb=anon,
    )


@dataclass(frozen=True)
class WindowsProfile:
    """A Windows guest under DM (§4.4): the visible total is a high-water mark that never drops
    until restart; ballooned memory counts as in use; demand is Committed Bytes (§3.2).

    Whether ballooned pages count in the Commit Limit is unknown (§8.6); here the limit is the
    high-water total plus the page file.
    """

    baseline_commit_mb: int = 750
    pagefile_mb: int = 1024
    page_cache_mb: int = 300

    def __post_init__(self) -> None:
        _check_profile(self.baseline_commit_mb, self.pagefile_mb, "pagefile_mb")
        _check_profile(self.baseline_commit_mb, self.page_cache_mb, "page_cache_mb")

    @property
    def os_name(self) -> str:
        return "windows"

    def demand_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return committed_mb

    def lowest_assigned_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return 0  # Windows gives what is asked and pages out if it must (§3.4)

    def visible_mb(self, assigned_mb: int, high_water_mb: int) -> int:
        return max(assigned_mb, high_water_mb)

    def available_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return _available_mb(committed_mb, assigned_mb)

    def view(
        self,
        committed_mb: int,
        assigned_mb: int,
        high_water_mb: int,
        maximum_mb: int,
        *,
        anon_mb: int | None = None,
        cache_mb: int = 0,
    ) -> GuestView:
        total = self.visible_mb(assigned_mb, high_water_mb)
        limit = total + self.pagefile_mb
        return _view(self, committed_mb, assigned_mb, total, limit, maximum_mb, anon_mb, cache_mb)

    def memory_limit_mb(self, view: GuestView, fixed_mb: int) -> tuple[int, int, int | None]:
        # Commit beyond the commit limit is refused (the guest watches commit); resident
        # memory is held to the commit limit, and above assigned memory it is slowed (v2
        # memory.high) or kept in check under host pressure (v1 soft limit), as paging would.
        hard = max(16, view.commit_limit_mb - fixed_mb)
        return hard, hard, max(16, view.assigned_mb - fixed_mb)


@dataclass(frozen=True)
class LinuxProfile:
    """A Linux guest with hv_balloon (§5). On a kernel with the Dec-2020 patch (the default)
    MemTotal follows assigned memory; on older ones it keeps the high-water mark and
    ballooned pages look used (§5.4).

    Demand is Committed_AS plus the balloon floor of totalram (§5.3). The ballooned pages
    that the guest's report also carries are left out: the host already counts them as
    removed, and adding them back would undo every balloon (inferred).
    """

    baseline_commit_mb: int = 250
    memtotal_follows_balloon: bool = True
    page_cache_mb: int = 200

    def __post_init__(self) -> None:
        _check_profile(self.baseline_commit_mb, self.page_cache_mb, "page_cache_mb")

    @property
    def os_name(self) -> str:
        return "linux"

    def visible_mb(self, assigned_mb: int, high_water_mb: int) -> int:
        if self.memtotal_follows_balloon:
            return assigned_mb
        return max(assigned_mb, high_water_mb)

    def demand_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        totalram = self.visible_mb(assigned_mb, high_water_mb)
        return committed_mb + linux_balloon_floor_mb(totalram)

    def lowest_assigned_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        # hv_balloon keeps MemAvailable above the floor: "Balloon floor reached" (§3.4, §5.3)
        return self.demand_mb(committed_mb, assigned_mb, high_water_mb)

    def available_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return _available_mb(committed_mb, assigned_mb)

    def view(
        self,
        committed_mb: int,
        assigned_mb: int,
        high_water_mb: int,
        maximum_mb: int,
        *,
        anon_mb: int | None = None,
        cache_mb: int = 0,
    ) -> GuestView:
        total = self.visible_mb(assigned_mb, high_water_mb)
        # Commit limit: vm.overcommit_ratio 50, no swap.
        return _view(
            self, committed_mb, assigned_mb, total, total // 2, maximum_mb, anon_mb, cache_mb
        )

    def memory_limit_mb(self, view: GuestView, fixed_mb: int) -> tuple[int, int, int | None]:
        # No swap: the guest's processes get what the idle OS leaves of assigned memory, less
        # the floor of free pages and hot cache the kernel keeps; beyond it the kernel
        # OOM-kills inside the guest. Each process's container shows MemTotal (what the JVM
        # sizes its heap from, as it would from sysconf in a VM).
        marks = Watermarks.for_total(view.total_mb)
        budget = view.assigned_mb - fixed_mb - marks.cache_floor_mb - marks.min_mb
        return max(16, budget), view.total_mb, None


def profile_for(os_name: str) -> GuestProfile:
    """The default profile for "windows" or "linux"."""
    name = os_name.lower()
    if name == "windows":
        return WindowsProfile()
    if name == "linux":
        return LinuxProfile()
    raise SettingError("guest_os", os_name, "must be 'windows' or 'linux'")
