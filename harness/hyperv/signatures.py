"""The documented parameters of every command the harness's scripts and client call, per
cmdlet, for the static checks of the scripts (tests/static) and of the emulator's cmdlets.

Sources (Microsoft Learn, module reference; Windows PowerShell 5.1 for the core modules):
- Hyper-V module: https://learn.microsoft.com/powershell/module/hyper-v/<cmdlet> (one page per
  cmdlet: Get-VM, New-VM, Set-VM, Start-VM, Stop-VM, Remove-VM, Get-VMMemory, Set-VMMemory,
  Checkpoint-VM, Get-VMCheckpoint, Restore-VMCheckpoint, Get-VMHost, Get-VMNetworkAdapter,
  Get-VMFirmware, Set-VMFirmware, New-VHD, Get-VHD). Only the parameter sets the harness can
  use are listed (no -CimSession / -Credential remoting sets), with their aliases where the
  docs give one (-VMName for -Name).
- Core: https://learn.microsoft.com/powershell/module/microsoft.powershell.core/,
  .../microsoft.powershell.management/, .../microsoft.powershell.utility/,
  .../microsoft.powershell.security/, .../cimcmdlets/get-ciminstance (view=powershell-5.1).
Every cmdlet also takes the common parameters (about_CommonParameters).
"""

from __future__ import annotations

from harness.hostcmdlets import parameters_missing
from harness.settings import HostVersion

COMMON = frozenset(
    {
        "Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ErrorVariable",
        "WarningVariable", "InformationVariable", "OutVariable", "OutBuffer", "PipelineVariable",
    }
)  # fmt: skip
_RISK = frozenset({"WhatIf", "Confirm"})
_REMOTE = frozenset({"ComputerName", "AsJob"})

HYPERV: dict[str, frozenset[str]] = {
    "Get-VM": frozenset({"Name", "VMName", "Id", "ClusterObject", "ComputerName"}),
    "New-VM": frozenset(
        {
            "Name",
            "VMName",
            "MemoryStartupBytes",
            "BootDevice",
            "NoVHD",
            "SwitchName",
            "VHDPath",
            "NewVHDPath",
            "NewVHDSizeBytes",
            "Path",
            "Version",
            "Prerelease",
            "Experimental",
            "Generation",
            "Force",
            "GuestStateIsolationType",
        }
    )
    | _REMOTE
    | _RISK,
    "Set-VM": frozenset(
        {
            "Name",
            "VMName",
            "VM",
            "Notes",
            "DynamicMemory",
            "StaticMemory",
            "MemoryStartupBytes",
            "MemoryMinimumBytes",
            "MemoryMaximumBytes",
            "ProcessorCount",
            "CheckpointType",
            "SmartPagingFilePath",
            "SnapshotFileLocation",
            "NewVMName",
            "AutomaticStartAction",
            "AutomaticStopAction",
            "AutomaticStartDelay",
            "AutomaticCheckpointsEnabled",
            "LockOnDisconnect",
            "Passthru",
            "AllowUnverifiedPaths",
            "GuestControlledCacheTypes",
            "LowMemoryMappedIoSpace",
            "HighMemoryMappedIoSpace",
            "BatteryPassthroughEnabled",
        }
    )
    | _REMOTE
    | _RISK,
    "Start-VM": frozenset({"Name", "VMName", "VM", "Passthru"}) | _REMOTE | _RISK,
    "Stop-VM": frozenset({"Name", "VMName", "VM", "Save", "TurnOff", "Force", "Passthru"})
    | _REMOTE
    | _RISK,
    "Remove-VM": frozenset({"Name", "VMName", "VM", "Force", "Passthru"}) | _REMOTE | _RISK,
    "Get-VMMemory": frozenset({"VMName", "VM", "VMSnapshot", "VMCheckpoint", "ComputerName"}),
    "Set-VMMemory": frozenset(
        {
            "VMName",
            "VM",
            "DynamicMemoryEnabled",
            "MinimumBytes",
            "StartupBytes",
            "MaximumBytes",
            "Buffer",
            "Priority",
            "MaximumAmountPerNumaNodeBytes",
            "ResourcePoolName",
            "Passthru",
        }
    )
    | _REMOTE
    | _RISK,
    "Checkpoint-VM": frozenset(
        {"Name", "VMName", "VM", "SnapshotName", "CheckpointName", "Passthru"}
    )
    | _REMOTE
    | _RISK,
    "Get-VMCheckpoint": frozenset(
        {"VMName", "VM", "Name", "Id", "ParentOf", "ChildOf", "SnapshotType", "ComputerName"}
    ),
    "Restore-VMCheckpoint": frozenset(
        {"VMName", "Name", "VM", "VMSnapshot", "VMCheckpoint", "Passthru"}
    )
    | _REMOTE
    | _RISK,
    "Get-VMHost": frozenset({"ComputerName"}),
    "Get-VMNetworkAdapter": frozenset(
        {"VMName", "VM", "Name", "All", "ManagementOS", "SwitchName", "IsLegacy", "VMSnapshot"}
    )
    | _REMOTE,
    # https://learn.microsoft.com/powershell/module/hyper-v/set-vmfirmware
    "Set-VMFirmware": frozenset(
        {
            "VMName",
            "VM",
            "VMFirmware",
            "BootOrder",
            "FirstBootDevice",
            "EnableSecureBoot",
            "SecureBootTemplate",
            "SecureBootTemplateId",
            "PreferredNetworkBootProtocol",
            "ConsoleMode",
            "PauseAfterBootFailure",
            "Passthru",
        }
    )
    | {"ComputerName"},
    # https://learn.microsoft.com/powershell/module/hyper-v/get-vmfirmware
    "Get-VMFirmware": frozenset({"VMName", "VM", "VMSnapshot"}) | {"ComputerName"},
    "New-VHD": frozenset(
        {
            "Path",
            "ParentPath",
            "Differencing",
            "SizeBytes",
            "Dynamic",
            "Fixed",
            "SourceDisk",
            "BlockSizeBytes",
            "LogicalSectorSizeBytes",
            "PhysicalSectorSizeBytes",
        }
    )
    | _REMOTE
    | _RISK,
    "Get-VHD": frozenset({"Path", "DiskNumber", "VMId"}) | _REMOTE,
}

CORE: dict[str, frozenset[str]] = {
    "Where-Object": frozenset({"FilterScript", "Property", "Value", "EQ", "Like", "InputObject"}),
    "ForEach-Object": frozenset({"Process", "Begin", "End", "MemberName", "InputObject"}),
    "Select-Object": frozenset({"First", "Last", "Skip", "Property", "ExpandProperty", "Unique"}),
    "Out-String": frozenset({"Stream", "Width", "InputObject"}),
    "Out-Null": frozenset({"InputObject"}),
    "Write-Error": frozenset(
        {
            "Message",
            "Category",
            "ErrorId",
            "TargetObject",
            "Exception",
            "ErrorRecord",
            "RecommendedAction",
            "CategoryActivity",
            "CategoryReason",
            "CategoryTargetName",
            "CategoryTargetType",
        }
    ),
    "Join-Path": frozenset({"Path", "ChildPath", "Resolve"}),
    "Split-Path": frozenset({"Path", "LiteralPath", "Parent", "Leaf", "Qualifier", "NoQualifier"}),
    "Test-Path": frozenset({"Path", "LiteralPath", "PathType", "IsValid"}),
    "Get-Item": frozenset({"Path", "LiteralPath", "Force", "Filter", "Include", "Exclude"}),
    # learn.microsoft.com/powershell/module/microsoft.powershell.diagnostics/get-winevent (5.1)
    "Get-WinEvent": frozenset(
        {
            "LogName",
            "ListLog",
            "ProviderName",
            "ListProvider",
            "Path",
            "FilterHashtable",
            "FilterXPath",
            "FilterXml",
            "MaxEvents",
            "ComputerName",
            "Credential",
            "Force",
            "Oldest",
        }
    ),
    "Remove-Item": frozenset(
        {"Path", "LiteralPath", "Force", "Recurse", "Filter", "Include", "Exclude"}
    )
    | _RISK,
    "New-Object": frozenset({"TypeName", "ArgumentList", "Property", "ComObject", "Strict"}),
    "Start-Process": frozenset(
        {
            "FilePath",
            "ArgumentList",
            "WorkingDirectory",
            "RedirectStandardOutput",
            "RedirectStandardError",
            "RedirectStandardInput",
            "NoNewWindow",
            "PassThru",
            "Wait",
            "WindowStyle",
            "UseNewEnvironment",
            "LoadUserProfile",
            "Credential",
            "Verb",
        }
    ),
    # learn.microsoft.com/powershell/module/microsoft.powershell.management/get-wmiobject
    # (view=powershell-5.1): the only WMI cmdlet of PowerShell 2.0 (host-facts' 2.0 branch).
    "Get-WmiObject": frozenset(
        {
            "Class",
            "Property",
            "Filter",
            "Query",
            "Namespace",
            "List",
            "Recurse",
            "Amended",
            "DirectRead",
            "EnableAllPrivileges",
            "Impersonation",
            "Authentication",
            "Locale",
            "Credential",
            "Authority",
            "ThrottleLimit",
            "ComputerName",
            "AsJob",
        }
    ),
    "Get-CimInstance": frozenset(
        {
            "ClassName",
            "Namespace",
            "Filter",
            "Query",
            "Property",
            "ComputerName",
            "KeyOnly",
            "OperationTimeoutSec",
            "Shallow",
        }
    ),
    "ConvertTo-SecureString": frozenset({"String", "AsPlainText", "Force", "Key", "SecureKey"}),
    "New-PSSession": frozenset(
        {"VMName", "VMId", "Credential", "ComputerName", "ConfigurationName", "Name"}
    ),
    "Invoke-Command": frozenset(
        {"Session", "ScriptBlock", "ArgumentList", "VMName", "VMId", "Credential", "InputObject"}
    ),
    "Get-Module": frozenset({"Name", "ListAvailable", "All"}),
    "Get-Command": frozenset({"Name", "Module", "CommandType"}),
    # Windows PowerShell 5.1 (no -AsHashtable, -NoEnumerate or -EnumsAsStrings before 6/7)
    "ConvertFrom-Json": frozenset({"InputObject"}),
    "ConvertTo-Json": frozenset({"InputObject", "Depth", "Compress"}),
}


def parameters(command: str) -> frozenset[str] | None:
    """The documented parameters of `command` (common ones included), None if unknown."""
    for table in (HYPERV, CORE):
        for name, params in table.items():
            if name.casefold() == command.casefold():
                return params | COMMON
    return None


def missing_before_2016(command: str, used: frozenset[str] | set[str]) -> set[str]:
    """The parameters of `used` that `command` lacks on a 2012 R2 host (harness.hostcmdlets)."""
    return parameters_missing(command, used, HostVersion.V2012R2)
