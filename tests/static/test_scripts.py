"""Static checks of every harness script, as a host receives it (includes spliced), parsed with a
real PowerShell grammar (tree-sitter-powershell): no syntax errors; Windows PowerShell 5.1
syntax only; every command and parameter documented (harness.hyperv.signatures) and, for the
Hyper-V module, implemented by the emulator; no native command's stderr merged under Stop; no
indexing of a command's result, which can be empty. Plus the issue 13 patterns per script."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import pytest

tree_sitter = pytest.importorskip("tree_sitter", reason="pip install -e '.[dev]'")
tsp = pytest.importorskip("tree_sitter_powershell", reason="pip install -e '.[dev]'")

from harness.emulator.cmdlets import HyperVHandler  # noqa: E402
from harness.emulator.cmdlets.registry import cmdlet as emulated  # noqa: E402
from harness.emulator.errors import EmulatorError, NamedParameterError  # noqa: E402
from harness.emulator.host import EmulatedHost  # noqa: E402
from harness.emulator.psrp import Command  # noqa: E402
from harness.hyperv.session import load_script  # noqa: E402
from harness.hyperv.signatures import HYPERV, parameters  # noqa: E402

Node = tree_sitter.Node
_PARSER = tree_sitter.Parser(tree_sitter.Language(tsp.language()))
SCRIPTS = sorted(
    p.name.removesuffix(".ps1")
    for p in (resources.files("harness.hyperv") / "scripts").iterdir()
    if p.name.endswith(".ps1")
)
# Syntax PowerShell 7 added (pipeline chains, null operators, ternary, ForEach -Parallel).
_PS7_TOKENS = {"&&", "||", "??", "??=", "?."}
_PS7_NODES = {"ternary_expression", "pipeline_chain_tail"}


@dataclass(frozen=True)
class Call:
    name: str
    parameters: tuple[str, ...]
    splats: tuple[str, ...]
    node: Node


def tree(name: str) -> tuple[bytes, Node]:
    source = load_script(name).encode("utf-8")
    return source, _PARSER.parse(source).root_node


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(source: bytes, node: Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8")


def functions(source: bytes, root: Node) -> set[str]:
    return {m.lower() for m in re.findall(r"function\s+([\w-]+)", source.decode("utf-8"))}


def command_name(command: Node) -> Node | None:
    """The name of a command (`Get-VM`, or `taskkill.exe` in `& taskkill.exe`), None when it
    invokes a script block or a variable."""
    for child in command.children:
        if child.type == "command_name":
            return child
        if child.type == "command_name_expr":
            return next((c for c in child.children if c.type == "command_name"), None)
    return None


def calls(source: bytes, root: Node) -> list[Call]:
    """Each command invoked by name: its parameters (named) and splatted variables."""
    found = []
    for node in walk(root):
        if node.type != "command":
            continue
        name_node = command_name(node)
        if name_node is None:
            continue  # & $scriptblock, & { ... }
        elements = next((c for c in node.children if c.type == "command_elements"), None)
        params: list[str] = []
        splats: list[str] = []
        for child in elements.children if elements is not None else ():
            if child.type == "command_parameter":
                params.append(text(source, child).lstrip("-").rstrip(":"))
            elif text(source, child).startswith("@") and re.fullmatch(
                r"@\w+", text(source, child).strip()
            ):
                splats.append(text(source, child).strip()[1:])
        found.append(Call(text(source, name_node), tuple(params), tuple(splats), node))
    return found


def splatted_keys(source: bytes, variable: str) -> set[str]:
    """Keys a script puts in a hashtable it splats: `$v = @{ K = ...; ... }` and `$v.K = ...`."""
    script = source.decode("utf-8")
    keys = set(re.findall(rf"\${variable}\.(\w+)\s*=", script))
    for body in re.findall(rf"\${variable}\s*=\s*@\{{([^}}]*)\}}", script):
        keys |= set(re.findall(r"(?:^|;)\s*(\w+)\s*=", body))
    return keys


def is_native(name: str) -> bool:
    return name.lower().endswith(".exe") or parameters(name) is None


@pytest.mark.parametrize("name", SCRIPTS)
def test_parses_without_errors(name: str) -> None:
    source, root = tree(name)
    errors = [text(source, n)[:60] for n in walk(root) if n.type == "ERROR" or n.is_missing]
    assert not root.has_error and errors == [], f"{name}: syntax errors at {errors}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_uses_only_windows_powershell_51_syntax(name: str) -> None:
    source, root = tree(name)
    bad = [
        text(source, n)
        for n in walk(root)
        if n.type in _PS7_NODES or (n.child_count == 0 and n.type in _PS7_TOKENS)
    ]
    parallel = [c.name for c in calls(source, root) if "parallel" in map(str.lower, c.parameters)]
    assert bad == [] and parallel == [], f"{name}: PowerShell 7 syntax {bad + parallel}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_command_and_parameter_is_documented(name: str) -> None:
    source, root = tree(name)
    own = functions(source, root)
    unknown = []
    for call in calls(source, root):
        if call.name.lower() in own or call.name.lower().endswith(".exe"):
            continue
        documented = parameters(call.name)
        if documented is None:
            unknown.append(call.name)
            continue
        used = set(call.parameters)
        for splat in call.splats:
            used |= splatted_keys(source, splat)
        folded = {p.casefold() for p in documented}
        unknown += [f"{call.name} -{p}" for p in sorted(used) if p.casefold() not in folded]
    assert unknown == [], f"{name}: not in harness.hyperv.signatures: {unknown}"


def _hyperv_uses() -> set[tuple[str, str]]:
    used: set[tuple[str, str]] = set()
    for name in SCRIPTS:
        source, root = tree(name)
        for call in calls(source, root):
            if call.name in HYPERV:
                params = set(call.parameters)
                for splat in call.splats:
                    params |= splatted_keys(source, splat)
                used |= {(call.name, p) for p in params} | {(call.name, "")}
    # what the client calls directly (harness/hyperv/host.py)
    used |= {
        ("Get-VM", "Name"), ("Get-VMMemory", "VMName"), ("Set-VMMemory", "VMName"),
        ("Start-VM", "Name"), ("Stop-VM", "Name"), ("Stop-VM", "Force"), ("Stop-VM", "TurnOff"),
        ("Checkpoint-VM", "Name"), ("Checkpoint-VM", "SnapshotName"),
        ("Restore-VMCheckpoint", "VMName"), ("Restore-VMCheckpoint", "Name"),
        ("Restore-VMCheckpoint", "Confirm"),
    }  # fmt: skip
    return used


@pytest.mark.parametrize("command, parameter", sorted(_hyperv_uses()))
def test_the_emulator_implements_each_hyperv_command_and_parameter(
    command: str, parameter: str, tmp_path: object
) -> None:
    """The emulator has the cmdlet and binds the parameter (any error of the emulator's but a
    binding one is fine: the value given here is a placeholder; any other exception is a bug)."""
    func = emulated.get(command)
    assert func is not None, f"the emulator has no {command}"
    if not parameter:
        return
    with EmulatedHost("8GB", guest_root=str(tmp_path)) as host:
        handler = HyperVHandler(host)
        value: object = True if parameter in ("Force", "TurnOff", "Confirm", "NoVHD") else "x"
        if parameter == "VM":
            value = {"Id": "00000000-0000-0000-0000-000000000000"}  # a VM object, of no VM
        try:
            func(handler, Command(command, parameters=((parameter, value),)), [])
        except NamedParameterError:
            pytest.fail(f"the emulator's {command} does not take -{parameter}")
        except EmulatorError:
            pass  # bound, then refused the placeholder: the parameter exists


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_native_command_merges_stderr_under_stop(name: str) -> None:
    """In 5.1 a native command's redirected stderr is a terminating error under Stop (#3996):
    `2>&1` on one only inside a block that sets a local Continue first."""
    source, root = tree(name)
    bad = []
    for node in walk(root):
        if node.type != "redirection" or not text(source, node).startswith("2>&1"):
            continue
        command = node.parent
        while command is not None and command.type != "command":
            command = command.parent
        name_node = None if command is None else command_name(command)
        if name_node is None or not is_native(text(source, name_node)):
            continue
        block = command.parent
        while block is not None and block.type != "script_block":
            block = block.parent
        before = "" if block is None else source[block.start_byte : node.start_byte].decode()
        if not re.search(r"\$ErrorActionPreference\s*=\s*'Continue'", before):
            bad.append(text(source, command))
    assert bad == [], f"{name}: native stderr merged under Stop: {bad}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_indexing_of_a_result_that_can_be_empty(name: str) -> None:
    """`(Get-X)[0]` throws "Cannot index into a null array" when nothing came back."""
    source, root = tree(name)
    bad = [
        text(source, n)
        for n in walk(root)
        if n.type == "element_access"
        and n.children
        and n.children[0].type in ("parenthesized_expression", "sub_expression", "array_expression")
    ]
    assert bad == [], f"{name}: indexes a command's result: {bad}"


# -- the issue 13 patterns, per script --------------------------------------------------------


def names(name: str) -> list[str]:
    source, root = tree(name)
    return [c.name for c in calls(source, root)]


def test_item1_and_8_processes_are_kept_in_session_state_not_looked_up_by_pid() -> None:
    script = load_script("guest-ops")
    assert "Get-Process" not in names("guest-ops")
    # Process.Start's object owns its handle, so ExitCode stays readable even for a program
    # that exits at once (issue 23, defect 3); Start-Process looked the process up by PID.
    assert "[Diagnostics.Process]::Start($info)" in script
    assert "Start-Process" not in names("guest-ops")
    assert "$global:DmhProcesses[$key] = " in script


def test_item2_processes_stop_as_a_tree_with_the_exit_code_checked() -> None:
    script = load_script("guest-ops")
    assert "taskkill.exe /PID $p.Id /T /F" in script and "$LASTEXITCODE" in script


def test_item4_and_5_counters_come_from_cim_classes_without_waits() -> None:
    for name in SCRIPTS:
        assert "Get-Counter" not in names(name), name
        assert "Start-Sleep" not in names(name), name
    for cls in (
        "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM",
        "Win32_PerfRawData_Counters_HyperVDynamicMemoryIntegrationService",
        "Win32_PerfRawData_PerfOS_Memory",
    ):
        assert cls in load_script("sample-vm") + load_script("guest-ops")
    assert "try { $all = @(Get-CimInstance" in load_script("sample-vm")  # missing: $null


def test_item6_no_script_escapes_names_and_vms_are_found_by_exact_name() -> None:
    for name in SCRIPTS:
        script = load_script(name)
        assert "-replace '([`*?" not in script, name
        if "Get-DmhVM $" in script:
            assert "$_.Name -eq $VMName" in script


def test_item9_remove_vm_walks_the_disk_chain_and_a_failed_new_vm_leaves_no_disk() -> None:
    remove = load_script("remove-vm")
    assert "(Get-VHD -Path $path).ParentPath" in remove
    create = load_script("new-vm-from-template")
    assert re.search(r"catch \{\s*if \(\$disk\) \{ Remove-Item -LiteralPath \$disk", create)


def test_item9_the_balancer_instance_is_chosen_by_name() -> None:
    assert "'Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryBalancer' 'System Balancer'" in (
        load_script("host-facts")
    )


def test_the_checks_catch_what_they_look_for() -> None:
    """The checks above fail on the patterns issue 13 found in the old scripts."""
    old = (
        b"$ErrorActionPreference = 'Stop'\n"
        b"& taskkill.exe /PID 5 /T /F 2>&1 | Out-Null\n"
        b"$v = (Get-Counter -Counter 'x').CounterSamples[0]\n"
        b"$w = (Get-Counter -Counter 'x')[0]\n"
        b"Get-X && Get-Y\n"
    )
    root = _PARSER.parse(old).root_node
    assert any(n.type == "redirection" for n in walk(root))
    assert any(n.type == "pipeline_chain_tail" for n in walk(root))
    assert [
        text(old, n)
        for n in walk(root)
        if n.type == "element_access" and n.children[0].type == "parenthesized_expression"
    ] == ["(Get-Counter -Counter 'x')[0]"]
    assert parameters("Get-VM") is not None and "Name" in (parameters("Get-VM") or ())
