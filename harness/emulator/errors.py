"""Errors the emulated host raises, one class per PowerShell error shape, and the one way to
turn them into the error record a client receives (`to_record`).

Each class carries its shape: the ErrorCategory, the head of the FullyQualifiedErrorId, the
exception type, and how the id is qualified; an instance carries Hyper-V's text (one line per
message of the real error, §1.9), the target object and, where a settings rule is behind it,
the harness.settings error (field, value and rule).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from harness.emulator.psrp import ErrorRecord
from harness.errors import HarnessError, SettingError

_NS = "Microsoft.HyperV.PowerShell"
_AUTOMATION = "System.Management.Automation"


class EmulatorError(HarnessError):
    """A failure as Windows reports it; subclasses fix the shape, instances the text.

    By default the shape is a Hyper-V cmdlet's: a VirtualizationException whose
    FullyQualifiedErrorId is "<error_id>,Microsoft.HyperV.PowerShell.Commands.<Cmdlet>" and
    whose activity is the command that failed.
    """

    category: ClassVar[str] = "InvalidOperation"
    error_id: ClassVar[str] = "InvalidOperation"
    exception_type: ClassVar[str] = f"{_NS}.VirtualizationException"

    def __init__(self, message: str, *, target: str = "", reason: SettingError | None = None):
        self.message = message
        self.target = target
        self.reason = reason
        super().__init__(message)

    def qualifier(self, command: str) -> str | None:
        """The .NET command class that ends the FullyQualifiedErrorId (None: the id alone)."""
        return f"{_NS}.Commands.{command.replace('-', '')}"

    def activity(self, command: str) -> str:
        return command


def to_record(exc: EmulatorError, command: str) -> ErrorRecord:
    """The error record `command` writes for `exc` (§1.9)."""
    qualifier = exc.qualifier(command)
    return ErrorRecord(
        message=exc.message,
        error_id=exc.error_id if qualifier is None else f"{exc.error_id},{qualifier}",
        category=exc.category,
        target_object=exc.target or None,
        exception_type=exc.exception_type,
        activity=exc.activity(command),
    )


def _vm_id(vm_id: uuid.UUID) -> str:
    return f"(Virtual machine ID {str(vm_id).upper()})"


# -- Hyper-V's shapes ----------------------------------------------------------------------


class InvalidParameterError(EmulatorError):
    """A value Hyper-V refuses: InvalidArgument / InvalidParameter."""

    category = "InvalidArgument"
    error_id = "InvalidParameter"

    @classmethod
    def from_setting(cls, exc: SettingError) -> InvalidParameterError:
        """A harness.settings rule broken by a cmdlet's value."""
        return cls(str(exc), target=str(exc.value), reason=exc)


class VmNotFoundError(InvalidParameterError):
    """No VM by that name or id (real Get-VM reports InvalidArgument / InvalidParameter)."""

    def __init__(self, name: str, *, by_id: bool = False) -> None:
        what = "id" if by_id else "name"
        super().__init__(
            f'Hyper-V was unable to find a virtual machine with {what} "{name}".', target=name
        )


class AmbiguousVmError(InvalidParameterError):
    """A name that several VMs share was used where one VM is needed (Hyper-V allows
    duplicate names; the caller should use the VM's id)."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(
            f'The input VMName "{name}" does not resolve to a single virtual machine'
            f" ({count} virtual machines have that name).",
            target=name,
        )


class MemorySettingError(InvalidParameterError):
    """VMMS refused a memory configuration ("Failed to modify device 'Memory'.", §1.9)."""

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


class ParameterMismatchError(InvalidParameterError):
    """Buffer, Minimum or Maximum given while DM ends up disabled (§1.1,
    SetVMMemory_ParameterMismatch; the English text is not recorded in the reference)."""

    def __init__(self, vm_name: str, parameters: tuple[str, ...]) -> None:
        names = ", ".join(parameters)
        super().__init__(
            f"Cannot set {names} for '{vm_name}' because dynamic memory is not enabled."
            " Set DynamicMemoryEnabled to true in the same call, or leave these out.",
            target=vm_name,
            reason=SettingError(names, "set", "applies only when dynamic memory is enabled (§1.1)"),
        )


class SizeNotAlignedError(InvalidParameterError):
    """The one alignment check Set-VMMemory makes itself (§1.1)."""

    error_id = "SetVMMemory_SizeNotAligned"

    def __init__(self, parameter: str) -> None:
        super().__init__(f"The value for {parameter} must be a multiple of 2 MB.")


class InvalidCredentialError(EmulatorError):
    """PowerShell Direct refused the guest credentials: New-PSSession's OpenError
    (real-host facts, "PowerShell Direct"), not a Hyper-V parameter error."""

    category = "OpenError"
    error_id = "PSSessionOpenFailed"
    exception_type = f"{_AUTOMATION}.Remoting.PSRemotingTransportException"

    def __init__(self, vm_name: str = "") -> None:
        super().__init__(
            f"[{vm_name}] The credential is invalid." if vm_name else "The credential is invalid.",
            target=vm_name,
        )

    def qualifier(self, command: str) -> str | None:
        return None

    def activity(self, command: str) -> str:
        return "New-PSSession"


class ObjectNotFoundError(EmulatorError):
    """A file, checkpoint or address that does not exist: ObjectNotFound / ObjectNotFound."""

    category = "ObjectNotFound"
    error_id = "ObjectNotFound"


class ResourceExistsError(EmulatorError):
    """Something by that name exists already: ResourceExists / ResourceExists."""

    category = "ResourceExists"
    error_id = "ResourceExists"


class CheckpointNotFoundError(ObjectNotFoundError):
    """No checkpoint matches: a -Name pattern (`by_name`), or an id or object given."""

    def __init__(self, target: str = "", *, by_name: bool = False) -> None:
        if by_name:
            text = f'Hyper-V was unable to find a checkpoint with name "{target}".'
        else:
            text = "Unable to find a snapshot matching the given criteria."
        super().__init__(text, target=target)


class InvalidStateError(EmulatorError):
    """The VM is in the wrong state for the operation: InvalidOperation / InvalidState."""

    category = "InvalidOperation"
    error_id = "InvalidState"


class VmStateError(InvalidStateError):
    def __init__(self, vm_name: str, vm_id: uuid.UUID, state: str, detail: str) -> None:
        super().__init__(
            "The operation cannot be performed while the virtual machine is in its current"
            f" state.\n'{vm_name}' is {state}: {detail}. {_vm_id(vm_id)}",
            target=vm_name,
        )
        self.state = state


class CheckpointError(InvalidStateError):
    """A checkpoint could not be taken (e.g. checkpoints disabled for the VM)."""

    def __init__(self, vm_name: str, why: str) -> None:
        super().__init__(f"Checkpoint operation failed for '{vm_name}'. {why}", target=vm_name)


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


class ArgumentValidationError(EmulatorError):
    """A parameter's value outside what it accepts: InvalidData /
    ParameterArgumentValidationError."""

    category = "InvalidData"
    error_id = "ParameterArgumentValidationError"

    def __init__(self, parameter: str, value: object, detail: str) -> None:
        super().__init__(
            f"Cannot validate argument on parameter '{parameter}'. {detail}", target=str(value)
        )


class SessionOpenError(EmulatorError):
    """PowerShell Direct could not reach the guest (it is not running)."""

    category = "OpenError"
    error_id = "PSSessionOpenFailed"

    def __init__(self, vm_name: str) -> None:
        super().__init__(
            "An error has occurred which Windows PowerShell cannot handle. A remote session"
            " might have ended.",
            target=vm_name,
        )


class GuestError(EmulatorError):
    """The emulated guest refused: not running, a bad path, an unknown command.

    Its shape is given where it is raised (the guest's refusals take several).
    """

    def __init__(
        self,
        message: str,
        *,
        target: str = "",
        category: str | None = None,
        error_id: str | None = None,
    ) -> None:
        super().__init__(message, target=target)
        if category is not None:
            self.category = category  # type: ignore[misc]  # an instance's own shape
        if error_id is not None:
            self.error_id = error_id  # type: ignore[misc]


# -- PowerShell's own shapes ---------------------------------------------------------------


class ParameterBindingError(EmulatorError):
    """PowerShell could not bind a parameter (before the cmdlet ran)."""

    category = "InvalidArgument"
    exception_type = f"{_AUTOMATION}.ParameterBindingException"


class MissingParameterError(ParameterBindingError):
    error_id = "MissingMandatoryParameter"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Cannot process command because of one or more missing mandatory parameters: {name}."
        )


class PositionalParameterError(ParameterBindingError):
    error_id = "PositionalParameterNotFound"

    def __init__(self, value: object) -> None:
        super().__init__(
            f"A positional parameter cannot be found that accepts argument '{value}'.",
            target=str(value),
        )


class NamedParameterError(ParameterBindingError):
    error_id = "NamedParameterNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A parameter cannot be found that matches parameter name '{name}'.", target=name
        )


class ParameterConversionError(ParameterBindingError):
    error_id = "CannotConvertArgumentNoMessage"

    def __init__(self, name: str, value: object, type_name: str, detail: str = "") -> None:
        super().__init__(
            f"Cannot bind parameter '{name}'. Cannot convert value \"{value}\" to type"
            f' "{type_name}".' + (f' Error: "{detail}"' if detail else ""),
            target=str(value),
        )


class CommandNotFoundError(EmulatorError):
    """A command this endpoint does not have (or a guest endpoint does not offer)."""

    category = "ObjectNotFound"
    error_id = "CommandNotFoundException"
    exception_type = f"{_AUTOMATION}.CommandNotFoundException"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script "
            "file, or operable program. Check the spelling of the name, or if a path was "
            "included, verify that the path is correct and try again.",
            target=name,
        )

    def qualifier(self, command: str) -> str | None:
        return None

    def activity(self, command: str) -> str:
        return ""


class ScriptNotSupportedError(EmulatorError):
    """The refusal of arbitrary PowerShell (a script, or Invoke-Expression of one)."""

    category = "NotImplemented"
    error_id = "ScriptNotSupported"
    exception_type = "System.NotSupportedException"

    def __init__(self, via: str = "") -> None:
        super().__init__(
            "The DM Harness emulator runs only the harness's named scripts "
            "(a '# dmh-script: <name>' line) and Hyper-V cmdlets, not arbitrary PowerShell"
            + (f" (here through {via})." if via else "."),
            target=via,
        )

    def qualifier(self, command: str) -> str | None:
        return None

    def activity(self, command: str) -> str:
        return self.target


class CounterError(EmulatorError):
    """Get-Counter's own failure (a PDH error), not a Hyper-V error record."""

    category = "InvalidResult"
    error_id = "CounterApiError"
    exception_type = "System.Exception"

    def qualifier(self, command: str) -> str | None:
        return "Microsoft.PowerShell.Commands.GetCounterCommand"
