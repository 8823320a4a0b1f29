"""Errors of the QEMU guest backend: one shape (a VirtualizationException, like a VM that
fails to start on Hyper-V), with the VM, the stage that failed and, for boot failures, the
tail of the guest's serial console."""

from __future__ import annotations

from harness.emulator.errors import EmulatorError


class QemuError(EmulatorError):
    """The QEMU backend could not do what was asked (build, launch, QMP, agent)."""

    category = "ResourceUnavailable"
    error_id = "QemuGuestFailure"

    def __init__(self, message: str, *, vm: str = "", stage: str = "") -> None:
        self.vm = vm
        self.stage = stage
        super().__init__(message, target=vm)


class QemuBootError(QemuError):
    """The VM did not come up: QEMU exited, or the agent never answered in time."""

    def __init__(self, message: str, *, vm: str, serial_tail: str) -> None:
        self.serial_tail = serial_tail
        tail = serial_tail.strip() or "(the serial console stayed empty)"
        super().__init__(
            f"{message}\n--- last lines of the serial console ---\n{tail}", vm=vm, stage="boot"
        )


class QemuUnsupportedError(QemuError):
    """An operation the QEMU backend does not offer (it says which, and what to use)."""

    category = "NotImplemented"
    error_id = "NotSupportedByQemuBackend"

    def __init__(self, operation: str, *, vm: str = "", hint: str = "") -> None:
        self.operation = operation
        text = f"The QEMU guest backend does not support {operation}."
        super().__init__(f"{text} {hint}".strip(), vm=vm, stage=operation)
