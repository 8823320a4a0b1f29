"""The one way a command joins the emulator: a `Registry` decorator, one instance for Hyper-V's
cmdlets, one for the harness's named scripts, one for the guest-ops script's operations.

Names are matched case-insensitively, as PowerShell resolves commands and as the guest-ops
script's ValidateSet and switch compare (§1.6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from harness.emulator.psrp import Command

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler
    from harness.emulator.cmdlets.realhost import GuestOpsFacts
    from harness.emulator.guestface import GuestBackend
    from harness.emulator.host import VmRecord

F = TypeVar("F", bound=Callable[..., Any])

# A cmdlet or a named script: the handler, the command as received, the pipeline's input.
Cmdlet = Callable[["HyperVHandler", Command, list[Any]], list[Any]]
# A guest operation: the handler, the (running) VM and its guest, the operation's arguments
# by lower-case name, and what the received guest-ops text does on a real guest.
GuestOperation = Callable[
    ["HyperVHandler", "VmRecord", "GuestBackend", Mapping[str, Any], "GuestOpsFacts"], Any
]


class Registry(Generic[F]):
    """Handlers by name; `@registry("Name", "Alias")` registers the function below it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._handlers: dict[str, F] = {}

    def __call__(self, *names: str) -> Callable[[F], F]:
        def register(func: F) -> F:
            for name in names:
                key = name.casefold()
                if key in self._handlers:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._handlers[key] = func
            return func

        return register

    def get(self, name: str) -> F | None:
        return self._handlers.get(name.casefold())

    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)


cmdlet: Registry[Cmdlet] = Registry("cmdlet")
script: Registry[Cmdlet] = Registry("named script")
guest_operation: Registry[GuestOperation] = Registry("guest operation")
