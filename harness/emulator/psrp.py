"""PSRP for the emulator: runspace pools and pipelines on psrpcore's server side, run by a handler.

A pipeline runs (in a worker thread) once it is whole: its Command, any follow-up Sends, and
the end of its input. What the handler writes goes out on the pipeline's Receives.

Longer than ~500 lines on purpose: the shell and pipeline state machine and its locking
(Command, Send, Receive, Signal, Delete against psrpcore) is one piece; the WS-Management
envelope is in wsman.py and the objects in psobjects.py.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psrpcore
from psrpcore import types as pst
from psrpcore._payload import PSRPMessage, create_message

from harness.emulator import wsman
from harness.emulator.psobjects import Serialized, from_ps, to_ps
from harness.errors import HarnessError

__all__ = [
    "CollectedOutput",
    "Command",
    "ErrorRecord",
    "PSRPEndpoint",
    "PipelineHandler",
    "PipelineOutput",
    "PipelineStopped",
    "TerminatingError",
]

log = logging.getLogger(__name__)

_CATEGORIES = frozenset(c.name for c in pst.ErrorCategory)
_COR_E_EXCEPTION = -2146233088


@dataclass(frozen=True)
class Command:
    """One command of a received pipeline, values already plain Python.

    `name` is the cmdlet name, or the script text when `is_script`. `parameters` keeps the
    client's order; a positional argument has the name None; a switch (a name sent without a
    value, as pypsrp's `add_parameter("Force")` does) has the value True.
    """

    name: str
    is_script: bool = False
    parameters: tuple[tuple[str | None, Any], ...] = ()
    end_of_statement: bool = False
    # Run in a scope of its own (UseLocalScope), or in the runspace's global scope, where its
    # variables outlive it; and which runspace (shell) it runs in.
    use_local_scope: bool = False
    runspace: str = ""

    @property
    def positional(self) -> tuple[Any, ...]:
        return tuple(value for name, value in self.parameters if name is None)

    def parameter(self, name: str, default: Any = None) -> Any:
        """The value of a named parameter, matched case-insensitively like PowerShell does."""
        wanted = name.lower()
        for key, value in reversed(self.parameters):
            if key is not None and key.lower() == wanted:
                return value
        return default

    def has_parameter(self, name: str) -> bool:
        wanted = name.lower()
        return any(key is not None and key.lower() == wanted for key, _ in self.parameters)


@dataclass(frozen=True)
class ErrorRecord:
    """A PowerShell error record as a real cmdlet would write it.

    `error_id` is the FullyQualifiedErrorId (e.g.
    "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.SetVMMemory"); `category` an
    ErrorCategory name (InvalidArgument, InvalidOperation, ObjectNotFound, ...); `activity`
    the command that failed (e.g. "Set-VMMemory"). `reason` defaults to the exception's short
    type name, `target_name`/`target_type` to the target's string and .NET type, as PowerShell
    fills them; together they make the CategoryInfo text
    "InvalidArgument: (vm1:String) [Set-VMMemory], VirtualizationException".
    """

    message: str
    error_id: str = "NotSpecified"
    category: str = "NotSpecified"
    target_object: Any = None
    exception_type: str = "System.Exception"
    activity: str = ""
    reason: str | None = None
    target_name: str | None = None
    target_type: str | None = None
    hresult: int = _COR_E_EXCEPTION

    def __post_init__(self) -> None:
        if self.category not in _CATEGORIES:
            raise ValueError(
                f"ErrorRecord category {self.category!r} is not a PowerShell ErrorCategory; "
                f"use one of {', '.join(sorted(_CATEGORIES))}"
            )

    @property
    def category_message(self) -> str:
        """CategoryInfo as PowerShell prints it (ErrorCategory_Message on the wire)."""
        return (
            f"{self.category}: ({self._target_name()}:{self._target_type()}) "
            f"[{self.activity}], {self._reason()}"
        )

    def _reason(self) -> str:
        if self.reason is not None:
            return self.reason
        return self.exception_type.rsplit(".", 1)[-1]

    def _target_name(self) -> str:
        if self.target_name is not None:
            return self.target_name
        target = self.target_object
        if target is None:
            return ""
        if isinstance(target, pst.PSObject) and not isinstance(target, (str, int, float)):
            return target.PSObject.to_string or ""
        return str(target)

    def _target_type(self) -> str:
        if self.target_type is not None:
            return self.target_type
        return _dotnet_type_name(self.target_object)


def _dotnet_type_name(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, pst.PSObject) and value.PSObject.type_names:
        return value.PSObject.type_names[0].rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Int32" if -(2**31) <= value < 2**31 else "Int64"
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    if isinstance(value, uuid.UUID):
        return "Guid"
    if isinstance(value, dict):
        return "Hashtable"
    if isinstance(value, (list, tuple)):
        return "Object[]"
    return type(value).__name__


class TerminatingError(HarnessError):
    """Raised by a handler to end its pipeline Failed (pypsrp's `had_errors` becomes True)."""

    def __init__(self, record: ErrorRecord) -> None:
        self.record = record
        super().__init__(f"{record.error_id}: {record.message}")


class PipelineStopped(HarnessError):
    """Raised by PipelineOutput writes once the client stopped the pipeline or closed the pool."""


class PipelineOutput(Protocol):
    """Where a handler writes; mirrors PowerShell's output, error, warning and verbose streams."""

    @property
    def stopped(self) -> bool:
        """True once the client stopped the pipeline; a long handler should then return."""
        ...

    def write(self, obj: Any) -> None: ...

    def write_error(self, record: ErrorRecord) -> None:
        """A non-terminating error: fills the error stream, the pipeline still completes."""
        ...

    def write_warning(self, text: str) -> None: ...

    def write_verbose(self, text: str) -> None: ...


class PipelineHandler(Protocol):
    """Runs one received pipeline; raise TerminatingError to end it Failed."""

    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None: ...


@dataclass
class CollectedOutput:
    """PipelineOutput kept in memory: for testing handlers without a server."""

    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    stopped: bool = False

    def write(self, obj: Any) -> None:
        self.output.append(obj)

    def write_error(self, record: ErrorRecord) -> None:
        self.errors.append(record)

    def write_warning(self, text: str) -> None:
        self.warnings.append(text)

    def write_verbose(self, text: str) -> None:
        self.verbose.append(text)


class _CategoryInfo(pst.ErrorCategoryInfo):
    """psrpcore prints CategoryInfo without the colon PowerShell puts after the category."""

    message = ""

    def __str__(self) -> str:
        return self.message


def _ps_error(record: ErrorRecord) -> pst.ErrorRecord:
    exception = pst.NETException(Message=record.message, HResult=record.hresult)
    chain = [record.exception_type]
    for base in ("System.Exception", "System.Object"):
        if base not in chain:
            chain.append(base)
    exception.PSObject.type_names = chain
    info = _CategoryInfo(
        Category=pst.ErrorCategory[record.category],
        Activity=record.activity,
        Reason=record._reason(),
        TargetName=record._target_name(),
        TargetType=record._target_type(),
    )
    info.message = record.category_message
    return pst.ErrorRecord(
        Exception=exception,
        CategoryInfo=info,
        TargetObject=to_ps(record.target_object),
        FullyQualifiedErrorId=record.error_id,
    )


def _set_state(
    pipeline: psrpcore.ServerPipeline,
    state: pst.PSInvocationState,
    error: pst.ErrorRecord | None = None,
    *,
    emit: bool = True,
) -> None:
    """The one use of psrpcore's private pipeline state change (pinned psrpcore==0.3.1).

    psrpcore has no public way to end a pipeline Failed, which is what makes pypsrp set
    `had_errors`, nor to enter Running without sending a state message real hosts do not
    send. tests/emulator/test_wsman_server.py::test_psrpcore_private_state_api catches a change.
    """
    pipeline._change_state(state, error, emit=emit)


def _command(raw: psrpcore.Command, runspace: str = "") -> Command:
    params: list[tuple[str | None, Any]] = []
    for name, value in raw.parameters:
        if name is None:
            params.append((None, from_ps(value)))
        else:
            params.append((str(name), True if value is None else from_ps(value)))
    return Command(
        name=str(raw.command_text),
        is_script=bool(raw.is_script),
        parameters=tuple(params),
        end_of_statement=bool(raw.end_of_statement),
        use_local_scope=bool(raw.use_local_scope),
        runspace=runspace,
    )


class _Pipeline:
    def __init__(self, ps: psrpcore.ServerPipeline, command_id: str) -> None:
        self.ps = ps
        self.command_id = command_id
        self.commands: tuple[Command, ...] | None = None
        self.unsupported = ""
        self.no_input = True
        self.input: list[Any] = []
        self.input_ended = False
        self.started = False
        self.finished = False  # its last message is queued
        self.stopped = False
        self.waiters = 0

    def ready(self) -> bool:
        whole = self.commands is not None or bool(self.unsupported)
        return whole and not self.started and (self.no_input or self.input_ended)

    def label(self) -> str:
        if self.commands is None:
            return self.unsupported or "?"
        return " | ".join("<script>" if c.is_script else c.name for c in self.commands)


class _Shell:
    def __init__(
        self,
        shell_id: str,
        resource_uri: str,
        create: wsman.CreateShell,
        owner: str,
        client_ip: str,
        fragment_size: int,
    ) -> None:
        self.id = shell_id
        self.resource_uri = resource_uri
        self.input_streams = create.input_streams
        self.output_streams = create.output_streams
        self.owner = owner
        self.client_ip = client_ip
        self.fragment_size = fragment_size
        # psrpcore is not thread-safe: everything touching pool or its pipelines holds this.
        self.cond = threading.Condition(threading.Lock())
        self.pool = psrpcore.ServerRunspacePool()
        self.pipelines: dict[uuid.UUID, _Pipeline] = {}
        self.out: dict[uuid.UUID | None, collections.deque[bytes]] = {}
        self.closed = False
        self.created = time.monotonic()
        self.last_used = self.created


class _WireOutput:
    """PipelineOutput that serializes into the shell's outgoing queue for the client."""

    def __init__(self, endpoint: PSRPEndpoint, shell: _Shell, pipeline: _Pipeline) -> None:
        self._endpoint = endpoint
        self._shell = shell
        self._pipeline = pipeline

    @property
    def stopped(self) -> bool:
        return self._pipeline.stopped or self._shell.closed

    def _emit(self, action: Callable[[psrpcore.ServerPipeline], None]) -> None:
        with self._shell.cond:
            if self.stopped:
                raise PipelineStopped(f"pipeline {self._pipeline.command_id} was stopped")
            action(self._pipeline.ps)
            self._endpoint._drain(self._shell)

    def write(self, obj: Any) -> None:
        if isinstance(obj, Serialized):
            self._emit(lambda ps: _write_serialized(ps, obj))
            return
        value = to_ps(obj)
        self._emit(lambda ps: ps.write_output(value))

    def write_error(self, record: ErrorRecord) -> None:
        ps_record = _ps_error(record)

        def action(ps: psrpcore.ServerPipeline) -> None:
            ps.prepare_message(ps_record, message_type=pst.PSRPMessageType.ErrorRecord)

        self._emit(action)

    def write_warning(self, text: str) -> None:
        self._emit(lambda ps: ps.write_warning(str(text)))

    def write_verbose(self, text: str) -> None:
        self._emit(lambda ps: ps.write_verbose(str(text)))


def _write_serialized(ps: psrpcore.ServerPipeline, obj: Serialized) -> None:
    """Queue an object already written as CLIXML: what ServerPipeline.write_output does after
    serializing (its state check, then RunspacePool.prepare_message's queueing). psrpcore has
    no public call for pre-serialized output, hence its private send buffer and fragment
    counter here (psrpcore is pinned)."""
    if ps.state != pst.PSInvocationState.Running:
        raise psrpcore.InvalidPipelineState(
            "write pipeline output", ps.state, [pst.PSInvocationState.Running]
        )
    pool = ps.runspace_pool
    kind = pst.PSRPMessageType.PipelineOutput
    data = create_message(False, kind, obj.clixml, pool.runspace_pool_id, ps.pipeline_id)
    pool._send_buffer.append(
        PSRPMessage(
            kind,
            bytearray(data),
            pool.runspace_pool_id,
            ps.pipeline_id,
            pool._fragment_counter,
            psrpcore.StreamType.default,
        )
    )


class _Workers:
    """At most `limit` daemon threads; each ends after `idle` seconds without work."""

    def __init__(self, limit: int, idle: float = 30.0) -> None:
        if limit < 1:
            raise ValueError(f"max_workers must be at least 1, not {limit}")
        self._limit = limit
        self._idle = idle
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: set[threading.Thread] = set()
        self._idle_count = 0
        self._closed = False
        self._counter = 0

    @property
    def thread_count(self) -> int:
        with self._cond:
            return len(self._threads)

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the emulator is stopping; no new pipelines run")
            self._jobs.append(job)
            if len(self._jobs) > self._idle_count and len(self._threads) < self._limit:
                self._counter += 1
                thread = threading.Thread(
                    target=self._loop, name=f"dmh-pipeline-{self._counter}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
            else:
                self._cond.notify()

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                self._idle_count += 1
                deadline = time.monotonic() + self._idle
                while not self._jobs and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._idle_count -= 1
                if not self._jobs:
                    self._threads.discard(me)
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:
                log.exception("pipeline worker job failed")

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            self._jobs.clear()
            threads = list(self._threads)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("pipeline thread %s still running at shutdown", thread.name)


class PSRPEndpoint:
    """Shells (runspace pools) and their pipelines behind the WS-Management actions."""

    def __init__(
        self,
        handler: PipelineHandler,
        *,
        max_workers: int = 16,
        max_receive_hold: float = 25.0,
        idle_timeout: float = 7200.0,
        max_envelope_size_kb: int = 500,
        machine: str = "localhost",
    ) -> None:
        self._handler = handler
        self._workers = _Workers(max_workers)
        # Receive never holds longer than this, to stay below the client's 30 s read timeout.
        self._max_hold = max_receive_hold
        self._idle_timeout = idle_timeout
        self._max_envelope_kb = max_envelope_size_kb
        self.machine = machine
        self._shells: dict[str, _Shell] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def shell_count(self) -> int:
        with self._lock:
            return len(self._shells)

    @property
    def worker_count(self) -> int:
        return self._workers.thread_count

    def handle(self, body: bytes, *, user: str, client_ip: str, address: str) -> tuple[int, bytes]:
        """Answer one SOAP request: (HTTP status, response envelope)."""
        try:
            request = wsman.parse_request(body)
        except wsman.WSManFault as fault:
            return 500, wsman.fault_envelope(fault, None, self.machine)
        # Hook: a handler with `wsman_resources` (the WMI provider) answers non-shell URIs.
        resources = getattr(self._handler, "wsman_resources", None)
        if resources is not None and resources.serves(request.resource_uri):
            return resources.answer(request, user=user, machine=self.machine)  # type: ignore[no-any-return]
        try:
            answer = self._dispatch(request, user=user, client_ip=client_ip, address=address)
        except wsman.WSManFault as fault:
            if fault.code != wsman.ERROR_OPERATION_TIMEOUT:
                log.debug("fault for %s: %s", request.action.rsplit("/", 1)[-1], fault)
            return 500, wsman.fault_envelope(fault, request.message_id, self.machine)
        except Exception as err:
            # A bug of ours must not cost the client its connection: answer a fault instead.
            log.exception("emulator failed handling %s", request.action)
            internal = wsman.WSManFault(
                wsman.ERROR_PLUGIN_FAILED, f"internal emulator error: {type(err).__name__}: {err}"
            )
            return 500, wsman.fault_envelope(internal, request.message_id, self.machine)
        return 200, wsman.envelope(
            wsman.response_action(request.action), request.message_id, answer
        )

    def close(self, timeout: float = 5.0) -> None:
        """Close every shell (waking held Receives), then stop the pipeline threads."""
        with self._lock:
            self._closed = True
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._close_shell(shell)
        self._workers.close(timeout)

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, req: wsman.Request, *, user: str, client_ip: str, address: str) -> str:
        action = req.action
        if action == wsman.ACTION_RECEIVE:
            return self._receive(self._shell(req), req)
        if action == wsman.ACTION_COMMAND:
            return self._command(self._shell(req), req)
        if action == wsman.ACTION_SEND:
            return self._send(self._shell(req), req)
        if action == wsman.ACTION_SIGNAL:
            return self._signal(self._shell(req), req)
        if action == wsman.ACTION_CREATE:
            return self._create(req, user=user, client_ip=client_ip, address=address)
        if action == wsman.ACTION_DELETE:
            return self._delete(req)
        if action == wsman.ACTION_GET:
            return self._get(req)
        raise wsman.action_not_supported(action)

    def _shell(self, req: wsman.Request) -> _Shell:
        with self._lock:
            shell = self._shells.get(req.shell_id or "")
        if shell is None:
            raise wsman.unknown_shell(req.shell_id)
        shell.last_used = time.monotonic()
        return shell

    def _create(self, req: wsman.Request, *, user: str, client_ip: str, address: str) -> str:
        create = wsman.parse_create(req.body)
        shell_id = (create.shell_id or str(uuid.uuid4())).upper()
        shell = _Shell(shell_id, req.resource_uri, create, user, client_ip, req.max_payload)
        self._reap_idle()
        with self._lock:
            if self._closed:
                raise wsman.WSManFault(wsman.ERROR_PLUGIN_FAILED, "the emulator is stopping")
            if shell_id in self._shells:
                raise wsman.WSManFault(
                    wsman.ERROR_TARGET_ALREADY_EXISTS,
                    f"a shell with ShellId {shell_id} already exists",
                    subcode="w:AlreadyExists",
                )
            self._shells[shell_id] = shell
        try:
            with shell.cond:
                self._feed(shell, create.creation_xml)
        except Exception:
            with self._lock:
                self._shells.pop(shell_id, None)
            raise
        log.debug("shell %s created for %s from %s", shell_id, user, client_ip)
        return wsman.resource_created(address, req.resource_uri, shell_id, self._shell_xml(shell))

    def _shell_xml(self, shell: _Shell, state: str | None = None) -> str:
        now = time.monotonic()
        return wsman.shell_xml(
            shell_id=shell.id,
            resource_uri=shell.resource_uri,
            owner=shell.owner,
            client_ip=shell.client_ip,
            input_streams=shell.input_streams,
            output_streams=shell.output_streams,
            run_time=now - shell.created,
            inactivity=now - shell.last_used,
            state=state,
        )

    def _get(self, req: wsman.Request) -> str:
        if req.shell_id is None and req.resource_uri.rstrip("/").endswith("/config"):
            return wsman.config_response(self._max_envelope_kb)
        return self._shell_xml(self._shell(req), state="Connected")

    def _delete(self, req: wsman.Request) -> str:
        with self._lock:
            shell = self._shells.pop(req.shell_id or "", None)
        if shell is None:
            raise wsman.unknown_shell(req.shell_id)
        self._close_shell(shell)
        log.debug("shell %s deleted", shell.id)
        return ""

    def _close_shell(self, shell: _Shell) -> None:
        with shell.cond:
            shell.closed = True
            # psrpcore refuses to close a pool that still has pipelines.
            for pipeline in list(shell.pipelines.values()):
                pipeline.stopped = True
                if pipeline.ps.state == pst.PSInvocationState.Running:
                    pipeline.ps.stop()
                pipeline.ps.close()
            shell.pipelines.clear()
            shell.out.clear()
            try:
                shell.pool.close()
            except psrpcore.PSRPCoreError as err:
                log.debug("shell %s: pool close: %s", shell.id, err)
            shell.cond.notify_all()

    def _reap_idle(self) -> None:
        """Shells a client abandoned (no Delete) go after idle_timeout, as WinRM's do."""
        cutoff = time.monotonic() - self._idle_timeout
        with self._lock:
            idle = [s for s in self._shells.values() if s.last_used < cutoff]
            for shell in idle:
                del self._shells[shell.id]
        for shell in idle:
            log.info("shell %s idle for %.0f s: closed", shell.id, self._idle_timeout)
            self._close_shell(shell)

    def _command(self, shell: _Shell, req: wsman.Request) -> str:
        line = wsman.parse_command(req.body)
        command_id = line.command_id or str(uuid.uuid4()).upper()
        pipeline_id = uuid.UUID(command_id)
        with shell.cond:
            self._check_open(shell)
            if pipeline_id in shell.pipelines:
                raise wsman.WSManFault(
                    wsman.ERROR_TARGET_ALREADY_EXISTS,
                    f"a command with CommandId {command_id} already exists",
                    subcode="w:AlreadyExists",
                )
            ps = psrpcore.ServerPipeline(shell.pool, pipeline_id)
            pipeline = shell.pipelines[pipeline_id] = _Pipeline(ps, command_id)
            try:
                self._feed(shell, line.arguments)
            except wsman.WSManFault:
                if not pipeline.started:
                    self._release(shell, pipeline)
                raise
        return wsman.command_response(command_id)

    def _send(self, shell: _Shell, req: wsman.Request) -> str:
        streams = wsman.parse_send(req.body)
        with shell.cond:
            self._check_open(shell)
            for stream in streams:
                try:
                    self._feed(shell, stream.data)
                except wsman.WSManFault:
                    # A pipeline whose creation failed to parse would never run: drop it.
                    key = uuid.UUID(stream.command_id) if stream.command_id else None
                    pipeline = shell.pipelines.get(key) if key is not None else None
                    if pipeline is not None and not pipeline.started:
                        self._release(shell, pipeline)
                    raise
        return "<rsp:SendResponse/>"

    def _signal(self, shell: _Shell, req: wsman.Request) -> str:
        signal = wsman.parse_signal(req.body)
        if signal.command_id is None:
            return "<rsp:SignalResponse/>"
        pipeline_id = uuid.UUID(signal.command_id)
        with shell.cond:
            pipeline = shell.pipelines.get(pipeline_id)
            # A Signal for a pipeline already released (invoke() then close()) still succeeds.
            if pipeline is not None:
                if signal.code in (wsman.SIGNAL_PS_CTRL_C, wsman.SIGNAL_CTRL_C):
                    self._stop(shell, pipeline)
                elif signal.code == wsman.SIGNAL_TERMINATE:
                    self._stop(shell, pipeline)
                    self._release(shell, pipeline)
                else:
                    log.debug("signal %s ignored", signal.code)
        return "<rsp:SignalResponse/>"

    def _stop(self, shell: _Shell, pipeline: _Pipeline) -> None:
        if pipeline.finished or pipeline.stopped:
            return
        pipeline.stopped = True
        if not pipeline.started:
            self._release(shell, pipeline)
            return
        pipeline.ps.stop()
        pipeline.finished = True
        self._drain(shell)
        # pypsrp's stop() does not Receive again; keep the Stopped state only for a waiting one.
        if pipeline.waiters == 0:
            self._release(shell, pipeline)

    def _release(self, shell: _Shell, pipeline: _Pipeline) -> None:
        pipeline.stopped = pipeline.stopped or not pipeline.finished
        key = pipeline.ps.pipeline_id
        if pipeline.ps.state == pst.PSInvocationState.Running:
            pipeline.ps.stop()
        pipeline.ps.close()
        self._drain(shell)  # so nothing psrpcore still holds for it outlives it
        shell.pipelines.pop(key, None)
        shell.out.pop(key, None)

    def _check_open(self, shell: _Shell) -> None:
        if shell.closed:
            raise wsman.unknown_shell(shell.id)

    def _receive(self, shell: _Shell, req: wsman.Request) -> str:
        recv = wsman.parse_receive(req.body)
        key = uuid.UUID(recv.command_id) if recv.command_id else None
        hold = self._max_hold
        if req.operation_timeout is not None:
            # Answer the timeout fault a little before the client gives up on its own.
            hold = min(hold, max(0.05, req.operation_timeout - 1.0))
        deadline = time.monotonic() + hold
        with shell.cond:
            pipeline = shell.pipelines.get(key) if key is not None else None
            if key is not None and pipeline is None:
                raise wsman.WSManFault(
                    wsman.ERROR_INVALID_SELECTORS,
                    f"no command with CommandId {recv.command_id} in shell {shell.id}",
                    subcode="w:InvalidSelectors",
                )
            if pipeline is not None:
                pipeline.waiters += 1
            try:
                while True:
                    self._check_open(shell)
                    queue = shell.out.get(key)
                    if queue:
                        break
                    if key is not None and key not in shell.pipelines:
                        raise wsman.WSManFault(
                            wsman.ERROR_INVALID_SELECTORS,
                            f"command {recv.command_id} was terminated",
                            subcode="w:InvalidSelectors",
                        )
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise wsman.timeout_fault()
                    shell.cond.wait(remaining)
            finally:
                if pipeline is not None:
                    pipeline.waiters -= 1
            data = self._take(queue, req.max_payload)
            done = None
            if pipeline is not None and pipeline.finished and not queue:
                # invoke() never sends Terminate: the last Receive releases the pipeline.
                done = pipeline.command_id
                self._release(shell, pipeline)
        stream = wsman.OutputStream(
            recv.streams[0] if recv.streams else "stdout", recv.command_id, data
        )
        return wsman.receive_response([stream], done)

    @staticmethod
    def _take(queue: collections.deque[bytes], limit: int) -> bytes:
        # Payloads hold whole PSRP fragments, so any prefix of the queue is a valid answer.
        parts = [queue.popleft()]
        size = len(parts[0])
        while queue and size + len(queue[0]) <= limit:
            chunk = queue.popleft()
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    # -- psrpcore plumbing (callers hold shell.cond) --------------------------------------------

    def _drain(self, shell: _Shell) -> None:
        """Move psrpcore's outgoing fragments into per-target queues, keeping their order."""
        pool = shell.pool
        moved = False
        while True:
            # data_to_send stops where the target pipeline changes, hence the loop.
            payload = pool.data_to_send(shell.fragment_size)
            if payload is None:
                break
            queue = shell.out.get(payload.pipeline_id)
            if queue is None:
                if payload.pipeline_id is not None and payload.pipeline_id not in shell.pipelines:
                    continue  # for a pipeline already released
                queue = shell.out[payload.pipeline_id] = collections.deque()
            queue.append(payload.data)
            moved = True
        if moved:
            shell.cond.notify_all()

    def _feed(self, shell: _Shell, data: bytes) -> None:
        pool = shell.pool
        try:
            pool.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, None))
            while True:
                event = pool.next_event()
                if event is None:
                    break
                self._on_event(shell, event)
        except Exception as err:
            # psrpcore raises ValueError, for one, on the out-of-range <I32> pypsrp writes for a
            # Python int above 2 GiB (notes pitfall 5); answer a fault, keep the connection.
            log.warning("shell %s: invalid PSRP data from the client: %s", shell.id, err)
            hint = ""
            if isinstance(err, ValueError) and "PSInt with value" in str(err):
                hint = " (pypsrp sends Python ints as Int32: tag byte counts as I64)"
            raise wsman.WSManFault(
                wsman.ERROR_PLUGIN_FAILED, f"invalid PSRP data from the client: {err}{hint}"
            ) from None
        for pipeline in list(shell.pipelines.values()):
            if pipeline.ready():
                self._start(shell, pipeline)
        self._drain(shell)

    def _on_event(self, shell: _Shell, event: psrpcore.PSRPEvent[Any, Any]) -> None:
        pipeline = shell.pipelines.get(event.pipeline_id) if event.pipeline_id else None
        if isinstance(event, psrpcore.CreatePipelineEvent):
            if pipeline is not None:
                metadata = pipeline.ps.metadata  # parsed once by psrpcore; the event re-parses
                if isinstance(metadata, psrpcore.PowerShell):
                    pipeline.commands = tuple(_command(c, shell.id) for c in metadata.commands)
                    pipeline.no_input = bool(metadata.no_input)
        elif isinstance(event, psrpcore.GetCommandMetadataEvent):
            if pipeline is not None:
                pipeline.unsupported = "GetCommandMetadata"
        elif isinstance(event, psrpcore.PipelineInputEvent):
            if pipeline is not None:
                pipeline.input.append(from_ps(event.data))
        elif isinstance(event, psrpcore.EndOfPipelineInputEvent):
            if pipeline is not None:
                pipeline.input_ended = True
        elif isinstance(
            event,
            (
                psrpcore.SetMaxRunspacesEvent,
                psrpcore.SetMinRunspacesEvent,
                psrpcore.ResetRunspaceStateEvent,
            ),
        ):
            shell.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
            shell.pool.runspace_availability_response(event.ci, max(1, shell.pool.max_runspaces))

    def _start(self, shell: _Shell, pipeline: _Pipeline) -> None:
        pipeline.started = True
        _set_state(pipeline.ps, pst.PSInvocationState.Running, emit=False)
        self._workers.submit(lambda: self._run(shell, pipeline))

    def _run(self, shell: _Shell, pipeline: _Pipeline) -> None:
        error: ErrorRecord | None = None
        try:
            if pipeline.commands is None:
                raise TerminatingError(
                    ErrorRecord(
                        f"The emulator does not implement {pipeline.unsupported}.",
                        error_id="NotImplemented",
                        category="NotImplemented",
                        exception_type="System.NotSupportedException",
                    )
                )
            self._handler.run(
                pipeline.commands, tuple(pipeline.input), _WireOutput(self, shell, pipeline)
            )
        except TerminatingError as err:
            error = err.record
        except PipelineStopped:
            return
        except Exception as err:
            log.exception("handler failed on %s", pipeline.label())
            error = ErrorRecord(
                f"The emulator failed running {pipeline.label()}: {type(err).__name__}: {err}",
                error_id="EmulatorHandlerFailed",
                category="NotSpecified",
                exception_type="System.Management.Automation.RuntimeException",
            )
        with shell.cond:
            if pipeline.stopped or shell.closed:
                return
            if error is None:
                pipeline.ps.complete()
            else:
                _set_state(pipeline.ps, pst.PSInvocationState.Failed, _ps_error(error))
            pipeline.finished = True
            self._drain(shell)
