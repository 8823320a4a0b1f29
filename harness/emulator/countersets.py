"""Which DM performance counters a Hyper-V build has: a counter a build lacks is absent from
Get-Counter and from the WMI perf classes alike, as on a host, so a tool that needs every
counter fails on that build (windows_exporter dropped every DM VM metric when one was missing:
prometheus-community/windows_exporter#2433 on 2019, #1924 on 2016).

"Guest Available Memory" (VM set) exists only from build 20348, WS2022 (reference §4.1; the
balancer leaves it out). "Available Memory For Balancing" (balancer set) is missing on 2016
(windows_exporter#1924: "The specified counter could not be found"); that it is missing on
the builds before 2016 too is an inference.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.settings import HostVersion

_BEFORE_2019 = (
    HostVersion.V2008R2SP1,
    HostVersion.V2012,
    HostVersion.V2012R2,
    HostVersion.V2016,
)
_BALANCER_ABSENT: dict[HostVersion, frozenset[str]] = {
    version: frozenset({"Available Memory For Balancing"}) for version in _BEFORE_2019
}


def balancer_counters_on(version: HostVersion, values: Mapping[str, float]) -> dict[str, float]:
    """The "Hyper-V Dynamic Memory Balancer" counters this build has."""
    absent = _BALANCER_ABSENT.get(version, frozenset())
    return {name: value for name, value in values.items() if name not in absent}
