"""Errors the emulated Hyper-V host raises, carrying what a cmdlet layer needs to build a
PowerShell error record (category, FullyQualifiedErrorId head, target, Hyper-V's text, §1.9).
"""

from __future__ import annotations

import uuid

from harness.errors import HarnessError, SettingError


class EmulatorError(HarnessError):
    """A failure as Hyper-V reports it.

    `category` is a PowerShell ErrorCategory name ("ObjectNotFound", "InvalidOperation",
    "InvalidArgument", "ResourceUnavailable"); `error_id` is the head of the
    FullyQualifiedErrorId (the cmdlet layer appends ",Microsoft.HyperV.PowerShell.Commands.X");
    `target` is the target object (usually the VM name); `message` is Hyper-V's text, one
    line per message of the real error (§1.9); `reason` is the harness.settings error behind
    it, if any (field, value and rule).
    """

    category = "InvalidOperation"
    error_id = "InvalidOperation"

    def __init__(
        self,
        message: str,
        *,
        target: str = "",
        category: str | None = None,
        error_id: str | None = None,
        reason: SettingError | None = None,
    ) -> None:
        self.message = message
        self.target = target
        if category is not None:
            self.category = category
        if error_id is not None:
            self.error_id = error_id
        self.reason = reason
        super().__init__(message)


def _vm_id(vm_id: uuid.UUID) -> str:
    return f"(Virtual machine ID {str(vm_id).upper()})"


class VmNotFoundError(EmulatorError):
    """No VM by that name or id. Real Get-VM reports InvalidArgument / InvalidParameter."""

    category = "InvalidArgument"
    error_id = "InvalidParameter"

    def __init__(self, name: str, *, by_id: bool = False) -> None:
        what = "id" if by_id else "name"
        super().__init__(
            f'Hyper-V was unable to find a virtual machine with {what} "{name}".', target=name
        )


class AmbiguousVmError(EmulatorError):
    """A name that several VMs share was used where one VM is needed (Hyper-V allows
    duplicate names; the caller should use the VM's id)."""

    category = "InvalidArgument"
    error_id = "InvalidParameter"

    def __init__(self, name: str, count: int) -> None:
        super().__init__(
            f'The input VMName "{name}" does not resolve to a single virtual machine'
            f" ({count} virtual machines have that name).",
            target=name,
        )


class CheckpointNotFoundError(EmulatorError):
    category = "ObjectNotFound"
    error_id = "ObjectNotFound"

    def __init__(self, vm_name: str, checkpoint: str) -> None:
        super().__init__(
            "Unable to find a snapshot matching the given criteria.", target=checkpoint
        )
        self.vm_name = vm_name


class VmStateError(EmulatorError):
    """The VM is in the wrong state for the operation."""

    category = "InvalidOperation"
    error_id = "InvalidState"

    def __init__(self, vm_name: str, vm_id: uuid.UUID, state: str, detail: str) -> None:
        super().__init__(
            "The operation cannot be performed while the virtual machine is in its current"
            f" state.\n'{vm_name}' is {state}: {detail}. {_vm_id(vm_id)}",
            target=vm_name,
        )
        self.state = state


class MemorySettingError(EmulatorError):
    """VMMS refused a memory configuration ("Failed to modify device 'Memory'.", §1.9)."""

    category = "InvalidArgument"
    error_id = "InvalidParameter"

    def __init__(
        self,
        vm_name: str,
        vm_id: uuid.UUID,
        reason: SettingError,
        detail: str,
        *,
        creating: bool = False,
    ) -> None:
        # New-VM reports only the specific lines, without the modify-device prefix (§1.9)
        prefix = (
            ""
            if creating
            else "Failed to modify device 'Memory'.\n"
            f"'{vm_name}' failed to modify device 'Memory'. {_vm_id(vm_id)}\n"
        )
        super().__init__(prefix + detail, target=vm_name, reason=reason)


class RuntimeMemoryChangeError(MemorySettingError):
    """A change this host version refuses while the VM runs (§2.3); seen as InvalidOperation
    / InvalidState in the Packer case (§1.9)."""

    category = "InvalidOperation"
    error_id = "InvalidState"


class ParameterMismatchError(EmulatorError):
    """Buffer, Minimum or Maximum given while DM ends up disabled (§1.1,
    SetVMMemory_ParameterMismatch; the English text is not recorded in the reference)."""

    category = "InvalidArgument"
    error_id = "InvalidParameter"

    def __init__(self, vm_name: str, parameters: tuple[str, ...]) -> None:
        names = ", ".join(parameters)
        super().__init__(
            f"Cannot set {names} for '{vm_name}' because dynamic memory is not enabled."
            " Set DynamicMemoryEnabled to true in the same call, or leave these out.",
            target=vm_name,
            reason=SettingError(names, "set", "applies only when dynamic memory is enabled (§1.1)"),
        )


class NotEnoughMemoryError(EmulatorError):
    """The host lacks the memory to start, resume or resize a VM (§3.1)."""

    category = "ResourceUnavailable"
    error_id = "OutOfMemory"

    def __init__(
        self, vm_name: str, vm_id: uuid.UUID, needed_mb: int, available_mb: int, action: str
    ) -> None:
        super().__init__(
            f"'{vm_name}' failed to {action}.\n"
            f"Not enough memory in the system to {action} the virtual machine {vm_name} with"
            f" ram size {needed_mb} megabytes. {_vm_id(vm_id)}\n"
            f"'{vm_name}' could not initialize memory: Ran out of memory (0x8007000E)."
            f" {_vm_id(vm_id)}",
            target=vm_name,
        )
        self.needed_mb = needed_mb
        self.available_mb = available_mb


class CheckpointError(EmulatorError):
    """A checkpoint could not be taken (e.g. checkpoints disabled for the VM)."""

    category = "InvalidOperation"
    error_id = "InvalidState"


class GuestError(EmulatorError):
    """The emulated guest refused: not running, a bad path, an unknown command."""
