"""The Hyper-V WMI provider served over WS-Management by the emulator (reference §4, §6 and
wmi-over-wsman.md), backed by the same EmulatedHost as the cmdlets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.emulator.psrp import PipelineHandler, PipelineOutput
from harness.emulator.wmi.provider import WmiAccess, WmiProvider

__all__ = ["ServedWith", "WmiAccess", "WmiProvider"]


class ServedWith:
    """A pipeline handler that also serves WS-Man resources (`wsman_resources`, which the
    PSRP endpoint consults before its shell actions): how the host's endpoint serves WMI
    and PSRP on one URL without the endpoint knowing either."""

    def __init__(self, handler: PipelineHandler, resources: WmiProvider) -> None:
        self.handler = handler
        self.wsman_resources = resources

    def run(
        self, commands: Sequence[Any], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        self.handler.run(commands, pipeline_input, out)
