"""A host session: one PSRP RunspacePool, opened lazily, reused for every command, reopened
after a broken connection, with bounded retries and error mapping. (The fixtures keep one
session per host per test process; the CLI opens one per command.)

Every error leaving this module is a HarnessError subclass that names the host (its label,
never a secret), the command and the host's own message.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import requests
from pypsrp.exceptions import AuthenticationError as PsrpAuthError
from pypsrp.exceptions import WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

from harness.config import HostTarget
from harness.errors import (
    AuthenticationError,
    CommandError,
    HostError,
    HostUnreachableError,
    InvalidArgumentError,
    InvalidStateError,
    ObjectNotFoundError,
)
from harness.hyperv.record import Recorder

log = logging.getLogger(__name__)


class _PayloadFilter(logging.Filter):
    """Keeps protocol payloads out of log records: pypsrp logs every message it sends and
    receives at DEBUG (CLIXML, or SOAP with base64 fragments), and those carry every parameter
    value, guest passwords included. psrpcore, the emulator's server side, does the same when
    the embedded emulator runs in this process."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cut = message.find("<")
        if cut != -1:
            record.msg = f"{message[:cut]}[{len(message) - cut} characters of payload not logged]"
            record.args = None
        return True


_PAYLOAD_LOGGERS = ("pypsrp.wsman", "pypsrp.messages", "pypsrp.serializer", "psrpcore._base")
_payload_filter = _PayloadFilter()
for _name in _PAYLOAD_LOGGERS:
    logging.getLogger(_name).addFilter(_payload_filter)

# The System.Management.Automation.ErrorCategory names that decide the error class.
_CATEGORY_ERRORS: dict[str, type[CommandError]] = {
    "InvalidArgument": InvalidArgumentError,
    "InvalidOperation": InvalidStateError,
    "ObjectNotFound": ObjectNotFoundError,
}
_CATEGORY_NAMES = [
    "NotSpecified", "OpenError", "CloseError", "DeviceError", "DeadlockDetected",
    "InvalidArgument", "InvalidData", "InvalidOperation", "InvalidResult", "InvalidType",
    "MetadataError", "NotImplemented", "NotInstalled", "ObjectNotFound", "OperationStopped",
    "OperationTimeout", "SyntaxError", "ParserError", "PermissionDenied", "ResourceBusy",
    "ResourceExists", "ResourceUnavailable", "ReadError", "WriteError", "FromStdErr",
    "SecurityError", "ProtocolError", "ConnectionError", "AuthenticationError",
    "LimitsExceeded", "QuotaExceeded", "NotEnabled",
]  # fmt: skip

_INCLUDE_LINE = re.compile(r"^#\s*dmh-include:\s*([a-z0-9-]+)\s*$", re.MULTILINE)
_READ_ONLY_SCRIPTS = frozenset({"host-facts", "sample-vm", "sample-vms", "vm-address"})


def int64(value: int) -> TaggedValue:
    """pypsrp sends a plain int as Int32; byte counts above 2 GiB must be tagged (notes §5)."""
    return TaggedValue("I64", int(value))


@dataclass(frozen=True)
class Invocation:
    """One statement: a cmdlet or a named script, with its parameters (values, never text)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    is_script: bool = False

    @property
    def label(self) -> str:
        return f"script {self.name}" if self.is_script else self.name

    @property
    def read_only(self) -> bool:
        """Safe to send again after a connection broke mid-call (it changes nothing)."""
        if self.is_script:
            return self.name in _READ_ONLY_SCRIPTS
        return self.name.lower().startswith("get-")


@functools.cache
def load_script(name: str) -> str:
    """The text of a named script under harness/hyperv/scripts/, each `# dmh-include: <part>`
    line replaced by scripts/include/<part>.ps1: PowerShell that several scripts share is
    written once, and a host receives one self-contained script (the harness's own text)."""
    scripts = resources.files("harness.hyperv") / "scripts"
    return _INCLUDE_LINE.sub(
        lambda line: (scripts / "include" / f"{line.group(1)}.ps1").read_text("utf-8").rstrip(),
        (scripts / f"{name}.ps1").read_text("utf-8"),
    )


class HostSession:
    """A reusable PSRP connection to one host; thread-safe (one pipeline at a time)."""

    def __init__(
        self,
        target: HostTarget,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        recorder: Recorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.recorder = recorder  # keeps every exchange (harness.hyperv.record)
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep  # how a retry waits out its backoff (a test records it)
        self._lock = threading.RLock()
        self._pool: RunspacePool | None = None

    def __enter__(self) -> HostSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------
    def cmdlet(self, name: str, **parameters: Any) -> list[Any]:
        return self.invoke(Invocation(name, parameters))

    def script(self, name: str, **parameters: Any) -> list[Any]:
        return self.invoke(Invocation(name, parameters, is_script=True))

    def invoke(self, invocation: Invocation) -> list[Any]:
        """Run one statement; reconnect on transport failures with bounded retries."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._lock:
                    return self._invoke_once(invocation)
            except HostUnreachableError as exc:
                self._drop_pool()
                if attempt > self.retries or not exc.retryable:
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "%s: connection failed running %s, retry %d/%d in %.1fs",
                    self.target.label,
                    invocation.label,
                    attempt,
                    self.retries,
                    delay,
                )
                self._sleep(delay)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                pool.close()
            except (WinRMError, requests.RequestException, OSError) as exc:
                log.debug("%s: closing the pool failed: %s", self.target.label, type(exc).__name__)

    # -- internals ------------------------------------------------------------------
    def _invoke_once(self, invocation: Invocation) -> list[Any]:
        pool = self._open()
        ps = PowerShell(pool)
        if invocation.is_script:
            # In a scope of its own: run in the runspace's global scope, a script's variables
            # (a guest password among them) and preferences would stay for later commands
            # (real-host facts, "Scripts run through PSRP without UseLocalScope").
            ps.add_script(load_script(invocation.name), use_local_scope=True)
        else:
            ps.add_cmdlet(invocation.name)
        for key, value in invocation.parameters.items():
            ps.add_parameter(key, _tag(value))
        sent = False
        try:
            ps.begin_invoke()
            sent = True  # the host accepted the pipeline: from here on, it may run
            output = ps.end_invoke()
        except Exception as exc:  # mapped below; anything else is a bug and re-raised
            error = self._map(exc, invocation.label)
            may_have_run = sent or not _never_ran(exc)
            if (
                isinstance(error, HostUnreachableError)
                and may_have_run
                and not invocation.read_only
            ):
                # Sending it again could, say, create a second VM: only reads, and failures
                # that prove nothing ran, are retried.
                error = HostUnreachableError(
                    f"{error.host_message} (not retried: the command may have run on the host)",
                    host=error.host,
                    command=error.command,
                    retryable=False,
                )
            raise error from None
        if ps.had_errors or ps.streams.error:
            raise self._record_error(ps.streams.error, invocation.label)
        return list(output)

    def _open(self) -> RunspacePool:
        if self._pool is not None:
            return self._pool
        t = self.target
        try:
            wsman = WSMan(
                t.hostname,
                port=t.port,
                username=t.username or None,
                password=t.password.reveal() or None,
                ssl=t.ssl,
                path=t.path,
                auth=t.auth,
                cert_validation=t.cert_validation,  # type: ignore[arg-type]  # a CA path works
                read_timeout=t.read_timeout,  # type: ignore[arg-type]  # float works
                operation_timeout=t.operation_timeout,
                encryption=t.encryption,
                reconnection_retries=0,
                certificate_pem=t.certificate_pem,
                certificate_key_pem=t.certificate_key_pem,
            )
            if self.recorder is not None:
                self.recorder.attach(wsman)
            pool = RunspacePool(wsman, configuration_name=t.configuration_name)
            pool.open()
        except Exception as exc:
            raise self._map(exc, "open runspace pool") from None
        log.debug("%s: runspace pool open", t.label)
        self._pool = pool
        return pool

    def _drop_pool(self) -> None:
        with self._lock:
            self._pool = None  # the old pool's shell is gone with the connection

    def _map(self, exc: Exception, command: str) -> HostError:
        host = self.target.label
        if isinstance(exc, HostError):
            return exc
        if isinstance(exc, PsrpAuthError) or (
            isinstance(exc, WinRMTransportError) and exc.code == 401
        ):
            return AuthenticationError(
                f"the host refused the credentials of user {self.target.username!r}",
                host=host,
                command=command,
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return HostUnreachableError(
                "TLS certificate verification failed (give the CA with "
                "cert_validation=/path/ca.pem in the host URL)",
                host=host,
                command=command,
                retryable=False,
            )
        if isinstance(exc, requests.RequestException | ConnectionError | TimeoutError):
            return HostUnreachableError(
                f"cannot reach the host ({type(exc).__name__})", host=host, command=command
            )
        if isinstance(exc, WinRMTransportError):
            if exc.code >= 500 or exc.code in (404, 408):
                return HostUnreachableError(
                    f"HTTP {exc.code} from the WinRM endpoint", host=host, command=command
                )
            return HostError(f"HTTP {exc.code} from the WinRM endpoint", host=host, command=command)
        if isinstance(exc, WSManFaultError):
            reason = str(exc.reason or "").strip()
            if "shell" in reason.lower() and "not" in reason.lower():
                return HostUnreachableError(
                    f"the remote shell is gone: {reason}", host=host, command=command
                )
            return HostError(f"WSMan fault {exc.code}: {reason}", host=host, command=command)
        if isinstance(exc, WinRMError):
            return HostUnreachableError(
                f"PSRP protocol failure ({type(exc).__name__}: {exc})", host=host, command=command
            )
        raise exc

    def _record_error(self, records: Sequence[Any], command: str) -> CommandError:
        if not records:
            return CommandError(
                "the pipeline failed without an error record",
                host=self.target.label,
                command=command,
            )
        record = records[0]
        message = _record_message(record)
        category = _category_name(getattr(record, "category", 0))
        cls = _CATEGORY_ERRORS.get(category, CommandError)
        return cls(
            message,
            host=self.target.label,
            command=command,
            error_id=str(getattr(record, "fq_error", "") or ""),
            category=category,
            target=str(getattr(record, "target_name", "") or ""),
        )


def _never_ran(exc: Exception) -> bool:
    """Failures that prove the command never reached a runspace: the connection was refused
    or could not be made, or the remote shell was already gone."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | ConnectionRefusedError):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    if isinstance(exc, WSManFaultError):
        reason = str(exc.reason or "").lower()
        return "shell" in reason and "not" in reason
    return False


def _record_message(record: Any) -> str:
    exception = getattr(record, "exception", None)
    for props in ("adapted_properties", "extended_properties"):
        message = getattr(exception, props, {}).get("Message")
        if message:
            return str(message)
    return str(record)


def _category_name(value: Any) -> str:
    try:
        return _CATEGORY_NAMES[int(value)]
    except (TypeError, ValueError, IndexError):
        return str(value)


def _tag(value: Any) -> Any:
    """Send every int as Int64 (PowerShell narrows it when binding an Int32 parameter)."""
    if isinstance(value, bool) or not isinstance(value, int | list | tuple | dict):
        return value
    if isinstance(value, int):
        return int64(value)
    if isinstance(value, dict):
        return {k: _tag(v) for k, v in value.items()}
    return [_tag(v) for v in value]
