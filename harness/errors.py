"""One exception base for the harness; subclasses carry the fields reports need.

Infrastructure failures (host unreachable, auth, a VM that will not start, a lever that
could not move memory) derive from `InfrastructureError` so reports can tell "broken" from
"failed"; an app that misbehaved is an `ExpectationFailed` (an AssertionError).
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class SettingError(HarnessError, ValueError):
    """A value a user gave (a size, a memory setting, an option) breaks a rule."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}: {value!s} is not allowed: {rule}")


class RuntimeChangeError(SettingError):
    """A memory setting that this host version cannot change while the VM runs."""

    def __init__(self, field: str, value: object, rule: str, host_version: str) -> None:
        self.host_version = host_version
        super().__init__(field, value, f"{rule} (host version {host_version})")


class ConfigError(HarnessError, ValueError):
    """A host URL, option or environment variable is malformed or incomplete."""


class InfrastructureError(HarnessError):
    """The infrastructure failed, not the app under test; reported as broken."""


class HostError(InfrastructureError):
    """A host-side failure, with the host (never a secret) and what was being done."""

    def __init__(self, message: str, *, host: str = "", command: str = "") -> None:
        self.host = host
        self.command = command
        self.host_message = message
        where = " ".join(p for p in (host, command and f"running {command}") if p)
        super().__init__(f"{where}: {message}" if where else message)


class HostUnreachableError(HostError):
    """The host could not be reached (DNS, TCP, TLS, HTTP) after the retries allowed."""

    def __init__(
        self, message: str, *, host: str = "", command: str = "", retryable: bool = True
    ) -> None:
        self.retryable = retryable  # False when retrying cannot help (a certificate refused)
        super().__init__(message, host=host, command=command)


class AuthenticationError(HostError):
    """The host refused the credentials."""


class CommandError(HostError):
    """The host ran a command and it failed; carries PowerShell's error record fields."""

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        command: str = "",
        error_id: str = "",
        category: str = "",
        target: str = "",
    ) -> None:
        self.error_id = error_id
        self.category = category
        self.target = target
        super().__init__(message, host=host, command=command)


class ObjectNotFoundError(CommandError):
    """The host has no such VM, checkpoint or counter."""


class InvalidStateError(CommandError):
    """The object is in the wrong state for the operation (e.g. changing a running VM)."""


class InvalidArgumentError(CommandError):
    """The host refused an argument (e.g. a memory setting outside Hyper-V's rules)."""


class DeadlineError(InfrastructureError):
    """A condition the harness waited for did not come true within its deadline."""


class LeverError(InfrastructureError):
    """A lever could not make memory move as asked; the test is broken, not failed."""


class BalloonBlocked(LeverError):
    """A balloon could not take the memory asked for because the guest still needs it: its
    demand kept the balancer's target above the level wanted. Whether that is the app's doing
    (it held its memory) or not is for the caller, which knows the app, to say."""

    def __init__(
        self, message: str, *, wanted_mb: int, assigned_mb: int, demand_mb: int, seconds: float
    ) -> None:
        self.wanted_mb = wanted_mb
        self.assigned_mb = assigned_mb
        self.demand_mb = demand_mb
        self.seconds = seconds
        super().__init__(message)

    @property
    def shortfall_mb(self) -> int:
        return max(0, self.assigned_mb - self.wanted_mb)


class ExpectationFailed(AssertionError):
    """The app under test did not behave as expected: a product failure."""
