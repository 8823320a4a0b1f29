"""The emulator's WinRM endpoint against the real pypsrp client over loopback, with toy handlers."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any
from xml.etree import ElementTree as ET

import psrpcore
import pytest
import requests
from psrpcore import types as pst
from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

from harness import deadline
from harness.emulator import psrp, wsman
from harness.emulator.psobjects import int64, make_enum, make_object
from harness.emulator.psrp import (
    CollectedOutput,
    Command,
    ErrorRecord,
    PipelineOutput,
    TerminatingError,
)
from harness.emulator.server import EmulatorServer
from harness.errors import ConfigError, DeadlineError

USER = "dmh"
PASSWORD = "correct horse battery staple"
GIB = 1024**3
HANG = 120  # seconds: a guard against a hung client, never a measure of speed
VM_TYPES = [
    "Microsoft.HyperV.PowerShell.VirtualMachine",
    "Microsoft.HyperV.PowerShell.VirtualMachineBase",
    "Microsoft.HyperV.PowerShell.VirtualizationObject",
]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    try:
        return deadline.wait_until(condition, timeout, what="the condition", interval=0.02)
    except DeadlineError:
        return False


class ToyHandler:
    """Dispatches on the first command's name; enough to exercise every protocol path."""

    def __init__(self) -> None:
        self.stop_seen = threading.Event()

    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        first = commands[0]
        name = first.name
        if name == "Get-VM":
            out.write(fake_vm(first.parameter("Name", "vm1")))
        elif name == "Echo":
            out.write(
                {
                    "commands": [
                        {"name": c.name, "is_script": c.is_script, "params": list(c.parameters)}
                        for c in commands
                    ],
                    "input": list(pipeline_input),
                }
            )
        elif name == "Measure-Big":
            blobs = [*first.positional, *pipeline_input, first.parameter("Blob", "")]
            out.write(
                [{"len": len(b), "sha": hashlib.sha256(b.encode()).hexdigest()} for b in blobs]
            )
        elif name == "Fail":
            raise TerminatingError(vm_not_found(first.parameter("Name", "nope")))
        elif name == "Crash":
            raise RuntimeError("handler bug")
        elif name == "Noisy":
            out.write_verbose("verbose one")
            out.write_warning("warning one")
            out.write_error(vm_not_found("a"))
            out.write(1)
            out.write_error(ErrorRecord("second", error_id="Second", category="InvalidOperation"))
            out.write("done")
        elif name == "Many":
            for i in range(first.parameter("Count", 3000)):
                out.write(make_object(["Toy.Item"], {"Index": i, "Bytes": int64(i * GIB)}))
        elif name == "Big-String":
            out.write("x" * first.parameter("Size", 3_000_000))
        elif name == "Slow":
            # Simulated work that outlasts the client's OperationTimeout.
            threading.Event().wait(first.parameter("Seconds", 1.0))
            out.write("slow done")
        elif name == "Wait-Stop":
            with contextlib.suppress(DeadlineError):
                deadline.wait_until(lambda: out.stopped, 20, what="the stop", interval=0.01)
                self.stop_seen.set()
        elif name == "Invoke-Expression":
            # What pypsrp's Client.execute_ps sends: Invoke-Expression -Command s | Out-String -Stream
            out.write(f"ran: {first.parameter('Command')}")
        else:
            raise TerminatingError(
                ErrorRecord(
                    f"The term '{name}' is not recognized as the name of a cmdlet.",
                    error_id="CommandNotFoundException",
                    category="ObjectNotFound",
                    target_object=name,
                    exception_type="System.Management.Automation.CommandNotFoundException",
                )
            )


def fake_vm(name: str) -> Any:
    return make_object(
        VM_TYPES,
        {
            "Name": name,
            "State": make_enum("Microsoft.HyperV.PowerShell.VMState", "Running", 2),
            "MemoryAssigned": int64(8 * GIB),
            "MemoryStartup": int64(512 * 1024**2),
            "DynamicMemoryEnabled": True,
            "ProcessorCount": int64(2),
            "Notes": None,
        },
        f"VirtualMachine (Name = '{name}')",
    )


def vm_not_found(name: str) -> ErrorRecord:
    return ErrorRecord(
        f'Hyper-V was unable to find a virtual machine with name "{name}".',
        error_id="InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
        category="InvalidArgument",
        target_object=name,
        exception_type="Microsoft.HyperV.PowerShell.VirtualizationException",
        activity="Get-VM",
    )


@pytest.fixture(scope="module")
def handler() -> ToyHandler:
    return ToyHandler()


@pytest.fixture(scope="module")
def server(handler: ToyHandler) -> Iterator[EmulatorServer]:
    with EmulatorServer(handler, username=USER, password=PASSWORD) as srv:
        yield srv


def connect(srv: EmulatorServer, **kwargs: Any) -> WSMan:
    options: dict[str, Any] = {
        "port": srv.port,
        "path": "wsman",
        "ssl": srv.tls,
        "auth": "basic",
        "encryption": "never",
        "username": USER,
        "password": PASSWORD,
    }
    if srv.tls:
        options["encryption"] = "auto"
        options["cert_validation"] = srv.cert_path
    options.update(kwargs)
    return WSMan("127.0.0.1", **options)


@pytest.fixture
def pool(server: EmulatorServer) -> Iterator[RunspacePool]:
    with connect(server) as conn, RunspacePool(conn) as rp:
        yield rp


def invoke(rp: RunspacePool, cmdlet: str, *params: tuple[str, Any], **kwargs: Any) -> PowerShell:
    ps = PowerShell(rp)
    ps.add_cmdlet(cmdlet)
    for name, value in params:
        ps.add_parameter(name, value)
    ps.invoke(**kwargs)
    return ps


# -- object shapes ------------------------------------------------------------------------------


def test_get_vm_object_has_real_shape(pool: RunspacePool) -> None:
    ps = invoke(pool, "Get-VM", ("Name", "web01"))
    assert not ps.had_errors
    [vm] = ps.output
    assert vm.types == [*VM_TYPES, "System.Object"]
    assert str(vm) == "VirtualMachine (Name = 'web01')"
    props = vm.adapted_properties
    assert vm.extended_properties == {}
    assert props["Name"] == "web01"
    assert props["MemoryAssigned"] == 8 * GIB
    assert props["MemoryStartup"] == 512 * 1024**2
    assert props["DynamicMemoryEnabled"] is True
    assert props["Notes"] is None
    state = props["State"]
    assert str(state) == "Running"
    assert state.property_sets == [2]
    assert state.types[:2] == ["Microsoft.HyperV.PowerShell.VMState", "System.Enum"]
    assert 'I64 N="MemoryAssigned">8589934592<' in vm._xml
    assert 'I64 N="MemoryStartup">536870912<' in vm._xml  # Int64 even when small


# -- parameters, input and values ---------------------------------------------------------------


def test_parameters_positional_switch_and_input_arrive(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Echo").add_parameter("Name", "vm1").add_parameter("Force").add_argument(7)
    ps.add_cmdlet("Second").add_parameter("Flag", False)
    ps.add_statement().add_script("$x = 1")
    [result] = ps.invoke(input=[1, "two", {"k": "v"}])  # type: ignore[arg-type]
    assert result["commands"] == [
        {
            "name": "Echo",
            "is_script": False,
            "params": [["Name", "vm1"], ["Force", True], [None, 7]],
        },
        {"name": "Second", "is_script": False, "params": [["Flag", False]]},
        {"name": "$x = 1", "is_script": True, "params": []},
    ]
    assert result["input"] == [1, "two", {"k": "v"}]


def test_command_end_of_statement_and_lookup() -> None:
    raw = psrpcore.PowerShell()
    raw.commands.append(psrpcore.Command("Get-VM").add_parameter("Name", "a"))
    raw.commands[-1].end_of_statement = True
    cmd = psrp._command(raw.commands[0])
    assert cmd.end_of_statement
    assert cmd.parameter("name") == "a"
    assert cmd.has_parameter("NAME") and not cmd.has_parameter("Id")


TRICKY = [
    'it\'s "quoted"',
    "$(Remove-Item C:\\ -Recurse)",
    "back`tick`n",
    "a; b; exit 1",
    "line1\nline2\r\nline3\ttab",
    "Grüße, 日本語, emoji 🎉, \u0000nul and \u001bescape",
    "<xml attr='&amp;'>&lt;</xml>",
    "_x0041_ stays literal",
    "",
    " leading and trailing ",
]


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_strings_arrive_verbatim(pool: RunspacePool, text: str) -> None:
    ps = invoke(pool, "Echo", ("Value", text))
    [result] = ps.output
    assert result["commands"][0]["params"] == [["Value", text]]


def test_int64_round_trips(pool: RunspacePool) -> None:
    # pypsrp sends plain ints as Int32 (notes pitfall 5): byte counts must be tagged I64.
    values = [8 * GIB, 1024 * GIB, 2**63 - 1, -(2**40)]
    ps = PowerShell(pool).add_cmdlet("Echo")
    for i, value in enumerate(values):
        ps.add_parameter(f"P{i}", TaggedValue("I64", value))
    [result] = ps.invoke()
    assert result["commands"][0]["params"] == [[f"P{i}", v] for i, v in enumerate(values)]
    assert all(type(v) is int for _, v in result["commands"][0]["params"])


def test_untagged_big_int_is_a_clear_fault_and_pool_survives(pool: RunspacePool) -> None:
    ps = PowerShell(pool).add_cmdlet("Echo").add_parameter("Bytes", 8 * GIB)
    with pytest.raises(WSManFaultError, match="tag byte counts as I64"):
        ps.invoke()
    assert invoke(pool, "Get-VM").output


def test_pool_level_messages(pool: RunspacePool) -> None:
    pool.exchange_keys()
    assert pool.get_available_runspaces() >= 1
    pool.reset_runspace_state()
    assert invoke(pool, "Get-VM").output


def test_large_parameter_and_input_arrive_whole(pool: RunspacePool) -> None:
    blob = "".join(chr(0x20 + i % 90) for i in range(1_500_000))
    piped = "é" * 700_000
    ps = PowerShell(pool).add_cmdlet("Measure-Big").add_argument(blob[:1000])
    ps.add_parameter("Blob", blob)
    [result] = ps.invoke(input=[piped])  # type: ignore[arg-type]
    expected = [blob[:1000], piped, blob]
    assert result == [
        {"len": len(b), "sha": hashlib.sha256(b.encode()).hexdigest()} for b in expected
    ]


def test_many_objects_out(pool: RunspacePool) -> None:
    ps = invoke(pool, "Many", ("Count", 3000))
    assert not ps.had_errors
    assert len(ps.output) == 3000
    assert [o.adapted_properties["Index"] for o in ps.output] == list(range(3000))
    assert ps.output[2999].adapted_properties["Bytes"] == 2999 * GIB


def test_large_string_out_in_envelopes_the_client_allows(server: EmulatorServer) -> None:
    sizes: list[int] = []
    # Not pypsrp's default 153600, which it raises to 512000 once the pool is open.
    with connect(server, max_envelope_size=102400) as conn:
        send = conn.transport.send

        def recording_send(message: bytes, **kwargs: Any) -> bytes:
            answer: bytes = send(message, **kwargs)
            sizes.append(len(answer))
            return answer

        conn.transport.send = recording_send  # type: ignore[method-assign]
        with RunspacePool(conn) as rp:
            ps = invoke(rp, "Big-String", ("Size", 3_000_000))
    assert ps.output == ["x" * 3_000_000]
    assert len(sizes) > 30  # the 3 MB came over many Receives ...
    assert max(sizes) <= 102400  # ... each within the client's MaxEnvelopeSize


# -- errors and streams -------------------------------------------------------------------------


def test_terminating_error_fails_pipeline_with_real_error_record(pool: RunspacePool) -> None:
    ps = invoke(pool, "Fail", ("Name", "ghost"))
    assert ps.had_errors
    assert ps.output == []
    [err] = ps.streams.error
    assert str(err) == 'Hyper-V was unable to find a virtual machine with name "ghost".'
    assert err.fq_error == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert err.message == "InvalidArgument: (ghost:String) [Get-VM], VirtualizationException"
    assert err.category == pst.ErrorCategory.InvalidArgument.value
    assert (err.activity, err.reason) == ("Get-VM", "VirtualizationException")
    assert (err.target_name, err.target_type) == ("ghost", "String")
    assert err.target_object == "ghost"  # type: ignore[attr-defined]  # set when deserialized
    assert err.exception is not None
    assert err.exception.types[0] == "Microsoft.HyperV.PowerShell.VirtualizationException"
    assert err.exception.adapted_properties["Message"] == str(err)
    # The pool is still usable after a failed pipeline.
    assert not invoke(pool, "Get-VM").had_errors


def test_non_terminating_errors_warnings_and_verbose(pool: RunspacePool) -> None:
    ps = invoke(pool, "Noisy")
    assert not ps.had_errors
    assert ps.output == [1, "done"]
    assert [str(e) for e in ps.streams.error] == [
        'Hyper-V was unable to find a virtual machine with name "a".',
        "second",
    ]
    assert ps.streams.error[1].message == "InvalidOperation: (:) [], Exception"
    assert ps.streams.error[1].fq_error == "Second"
    assert [w.message for w in ps.streams.warning] == ["warning one"]
    assert [v.message for v in ps.streams.verbose] == ["verbose one"]


def test_handler_crash_fails_pipeline_not_server(
    pool: RunspacePool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="harness.emulator.psrp"):
        ps = invoke(pool, "Crash")
    assert ps.had_errors
    [err] = ps.streams.error
    assert "RuntimeError: handler bug" in str(err)
    assert any("handler failed on Crash" in r.getMessage() for r in caplog.records)
    assert invoke(pool, "Get-VM").output


def test_unknown_command_is_command_not_found(pool: RunspacePool) -> None:
    ps = invoke(pool, "Get-Nothing")
    assert ps.had_errors
    assert ps.streams.error[0].message == (
        "ObjectNotFound: (Get-Nothing:String) [], CommandNotFoundException"
    )


def test_error_record_rejects_unknown_category() -> None:
    with pytest.raises(ValueError, match="not a PowerShell ErrorCategory"):
        ErrorRecord("x", category="Oops")


def test_collected_output_is_a_pipeline_output(handler: ToyHandler) -> None:
    out = CollectedOutput()
    handler.run([Command("Noisy")], [], out)
    assert out.output == [1, "done"]
    assert [e.error_id for e in out.errors] == [vm_not_found("a").error_id, "Second"]
    assert (out.warnings, out.verbose) == (["warning one"], ["verbose one"])


def test_psrpcore_private_state_api() -> None:
    """Fails when psrpcore changes what _set_state relies on: the pin and the private call."""
    assert version("psrpcore") == "0.3.1"
    params = inspect.signature(psrpcore.ServerPipeline._change_state).parameters
    assert list(params)[:4] == ["self", "state", "error", "emit"]
    pool = psrpcore.ServerRunspacePool()
    pipeline = psrpcore.ServerPipeline(pool, uuid.uuid4())
    states = []
    psrp._set_state(pipeline, pst.PSInvocationState.Running, emit=False)
    states.append(pipeline.state)
    assert pool.data_to_send() is None  # no Running state message, as real hosts
    psrp._set_state(pipeline, pst.PSInvocationState.Failed, psrp._ps_error(vm_not_found("x")))
    states.append(pipeline.state)
    assert states == [pst.PSInvocationState.Running, pst.PSInvocationState.Failed]
    assert pool.data_to_send() is not None


# -- clients, auth and TLS ----------------------------------------------------------------------


def test_client_execute_ps(server: EmulatorServer) -> None:
    client = Client(
        "127.0.0.1",
        port=server.port,
        path="wsman",
        ssl=False,
        auth="basic",
        encryption="never",
        username=USER,
        password=PASSWORD,
    )
    output, streams, had_errors = client.execute_ps("Get-Date; 'a' | Out-Null")
    assert output == "ran: Get-Date; 'a' | Out-Null"
    assert not had_errors
    assert streams.error == []


def test_wrong_password_is_authentication_error(server: EmulatorServer) -> None:
    with connect(server, password="wrong") as conn, pytest.raises(AuthenticationError):
        RunspacePool(conn).open()
    answer = requests.post(server.url, data=b"<x/>", timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_two_clients_at_once(server: EmulatorServer) -> None:
    def client(tag: str) -> None:
        with connect(server) as conn, RunspacePool(conn) as rp:
            for i in range(25):
                [result] = invoke(rp, "Echo", ("Tag", f"{tag}-{i}")).output
                assert result["commands"][0]["params"] == [["Tag", f"{tag}-{i}"]]

    with ThreadPoolExecutor(2) as clients:
        for done in [clients.submit(client, tag) for tag in ("a", "b")]:
            done.result(HANG)  # a client's failure is raised here


def test_https_with_generated_certificate(handler: ToyHandler) -> None:
    with EmulatorServer(handler, username=USER, password=PASSWORD, tls=True) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        assert srv.cert_path is not None
        with connect(srv) as conn, RunspacePool(conn) as rp:
            assert str(invoke(rp, "Get-VM").output[0].adapted_properties["State"]) == "Running"
        with (
            connect(srv, cert_validation=True) as conn,
            pytest.raises(requests.exceptions.SSLError),
        ):
            RunspacePool(conn).open()
        # The same certificate also passes the strict checks newer Pythons apply by default.
        ctx = ssl.create_default_context(cafile=srv.cert_path)
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        with ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", srv.port), timeout=10),
            server_hostname="localhost",
        ) as tls_sock:
            assert tls_sock.version() is not None
        cert_path = srv.cert_path
    assert not os.path.exists(cert_path)


def test_non_loopback_bind_needs_allow_remote(
    handler: ToyHandler, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="allow_remote=True"):
        EmulatorServer(handler, password=PASSWORD, host="0.0.0.0")
    with pytest.raises(ConfigError, match="not a loopback address"):
        EmulatorServer(handler, password=PASSWORD, host="example.com")
    with caplog.at_level(logging.WARNING, logger="harness.emulator.server"):
        EmulatorServer(handler, password=PASSWORD, host="0.0.0.0", allow_remote=True)
    assert any("other machines" in r.getMessage() for r in caplog.records)
    EmulatorServer(handler, password=PASSWORD, host="localhost")
    EmulatorServer(handler, password=PASSWORD, host="::1")


# -- WS-Management behaviour --------------------------------------------------------------------


def test_unsupported_actions_and_unknown_shell_are_faults(server: EmulatorServer) -> None:
    shell_uri = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
    with connect(server) as conn:
        for call in (conn.enumerate, conn.pull):
            with pytest.raises(WSManFaultError) as info:
                call(shell_uri)
            assert info.value.code == wsman.ERROR_ACTION_NOT_SUPPORTED
        with RunspacePool(conn) as rp:
            with pytest.raises(WSManFaultError) as info:
                rp.disconnect()
            assert info.value.code == wsman.ERROR_ACTION_NOT_SUPPORTED
            assert rp.is_alive()
            selectors = rp.shell._selector_set
        with pytest.raises(WSManFaultError) as info:
            conn.receive(rp.shell.resource_uri, _receive_body(), selector_set=selectors)
        assert info.value.code == wsman.ERROR_UNEXPECTED_SELECTORS
        assert "not found" in (info.value.reason or "")
        config = conn.get_server_config()
        size = config.find(f".//{{{wsman.NS_CONFIG}}}MaxEnvelopeSizekb")
        assert size is not None and size.text == "500"


def _receive_body() -> ET.Element:
    receive = ET.Element(f"{{{wsman.NS_SHELL}}}Receive")
    ET.SubElement(receive, f"{{{wsman.NS_SHELL}}}DesiredStream").text = "stdout"
    return receive


def test_is_alive_false_after_close(server: EmulatorServer) -> None:
    with connect(server) as conn:
        rp = RunspacePool(conn)
        rp.open()
        twin = RunspacePool(conn)
        twin.shell = rp.shell
        twin.state = rp.state
        rp.close()
        assert not twin.is_alive()


def test_long_poll_outlasting_operation_timeout(server: EmulatorServer) -> None:
    timeouts: list[WinRMTransportError] = []
    with connect(server, operation_timeout=2) as conn, RunspacePool(conn) as rp:
        send = conn.transport.send

        def recording_send(message: bytes, **kwargs: Any) -> bytes:
            try:
                answer: bytes = send(message, **kwargs)
            except WinRMTransportError as err:
                if f'Code="{wsman.ERROR_OPERATION_TIMEOUT}"' in err.response_text:
                    timeouts.append(err)
                raise
            return answer

        conn.transport.send = recording_send  # type: ignore[method-assign]
        started = time.monotonic()
        ps = invoke(rp, "Slow", ("Seconds", 3.5))
        assert ps.output == ["slow done"]
        assert time.monotonic() - started >= 3.5
    # The server answered 0x80338029 about a second before each 2 s OperationTimeout,
    # and pypsrp retried silently.
    assert len(timeouts) >= 2


def test_stop_reaches_handler_and_pool_stays_usable(
    server: EmulatorServer, handler: ToyHandler
) -> None:
    handler.stop_seen.clear()
    with connect(server) as conn, RunspacePool(conn) as rp:
        ps = PowerShell(rp).add_cmdlet("Wait-Stop")
        ps.begin_invoke()
        ps.stop()
        assert handler.stop_seen.wait(10)
        done = invoke(rp, "Get-VM")
        done.close()  # Terminate for a pipeline already released still succeeds
        assert done.output


def test_server_stop_closes_shells_and_threads(handler: ToyHandler) -> None:
    before = threading.active_count()
    srv = EmulatorServer(handler, username=USER, password=PASSWORD)
    srv.start()
    conn = connect(srv)
    rp = RunspacePool(conn)
    rp.open()
    invoke(rp, "Get-VM")
    assert srv.shell_count == 1
    srv.stop()
    assert srv.shell_count == 0
    assert wait_until(lambda: threading.active_count() <= before)
    conn.close()


# -- many clients ------------------------------------------------------------------------------


def test_threads_stay_bounded_over_many_pools(server: EmulatorServer) -> None:
    """Pools opened and closed by two clients at once leave no shell and no thread behind.
    (RSS growth and the time per pipeline over 3000 pipelines: benchmarks/ci.py --soak.)"""

    def run_pools(pools: int, per_pool: int) -> None:
        for _ in range(pools):
            with connect(server) as conn, RunspacePool(conn) as rp:
                for i in range(per_pool):
                    [vm] = invoke(rp, "Get-VM", ("Name", f"vm{i}")).output
                    assert vm.adapted_properties["Name"] == f"vm{i}"

    run_pools(1, 5)
    threads_before = threading.active_count()
    with ThreadPoolExecutor(2) as clients:
        for done in [clients.submit(run_pools, 3, 20) for _ in range(2)]:
            done.result(HANG)  # a client's failure is raised here
    assert server.shell_count == 0
    # Connection threads end when clients close; pipeline threads stay bounded by max_workers.
    assert wait_until(lambda: threading.active_count() <= threads_before + 3)
