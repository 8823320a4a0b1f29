"""The CIM classes the harness's scripts read, with their property names, for the static check
that every `$obj.Property` read from one exists (issue 23). Data, kept with its origin:

- The Hyper-V DM and PerfOS performance classes: Microsoft's generated root\\CIMV2 bindings,
  github.com/microsoft/wmi (MIT), `package cimv2`, "Auto Generated ... using wmigen, Source
  root.CIMV2": structs Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM,
  ..._HyperVDynamicMemoryBalancer, Win32_PerfRawData_Counters_HyperVDynamicMemoryIntegrationService,
  Win32_PerfRawData_PerfOS_Memory; the tail of PerfOS_Memory (System*, Transition*,
  WriteCopies*) as prometheus-community/windows_exporter's struct lists it.
- Win32_PerfRawData's own properties (every perf class inherits them): the same bindings'
  Win32_PerfRawData / Win32_Perf structs.
- Win32_OperatingSystem and Win32_ComputerSystem: learn.microsoft.com,
  windows/win32/cimwin32prov/win32-operatingsystem and win32-computersystem (only the
  properties listed here; a script reading another must add it here, from the same page).
"""

from __future__ import annotations

# fmt: off
PERF_BASE = frozenset(
    {
        "Caption", "Description", "Name", "Frequency_Object", "Frequency_PerfTime",
        "Frequency_Sys100NS", "Timestamp_Object", "Timestamp_PerfTime", "Timestamp_Sys100NS",
    }
)

CLASSES: dict[str, frozenset[str]] = {
    "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM": PERF_BASE
    | {
        "AddedMemory",
        "AveragePressure",
        "CurrentPressure",
        "GuestAvailableMemory",
        "GuestVisiblePhysicalMemory",
        "MaximumPressure",
        "MemoryAddOperations",
        "MemoryRemoveOperations",
        "MinimumPressure",
        "PhysicalMemory",
        "RemovedMemory",
        "SmartPagingWorkingSetSize",
    },
    "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryBalancer": PERF_BASE
    | {
        "AvailableMemory",
        "AvailableMemoryForBalancing",
        "AveragePressure",
        "SystemCurrentPressure",
    },
    "Win32_PerfRawData_Counters_HyperVDynamicMemoryIntegrationService": PERF_BASE
    | {"MaximumMemoryMbytes"},
    "Win32_PerfRawData_PerfOS_Memory": PERF_BASE
    | {
        "AvailableBytes",
        "AvailableKBytes",
        "AvailableMBytes",
        "CacheBytes",
        "CacheBytesPeak",
        "CacheFaultsPersec",
        "CommitLimit",
        "CommittedBytes",
        "DemandZeroFaultsPersec",
        "FreeAndZeroPageListBytes",
        "FreeSystemPageTableEntries",
        "LongTermAverageStandbyCacheLifetimes",
        "ModifiedPageListBytes",
        "PageFaultsPersec",
        "PageReadsPersec",
        "PagesInputPersec",
        "PagesOutputPersec",
        "PagesPersec",
        "PageWritesPersec",
        "PercentCommittedBytesInUse",
        "PercentCommittedBytesInUse_Base",
        "PoolNonpagedAllocs",
        "PoolNonpagedBytes",
        "PoolPagedAllocs",
        "PoolPagedBytes",
        "PoolPagedResidentBytes",
        "StandbyCacheCoreBytes",
        "StandbyCacheNormalPriorityBytes",
        "StandbyCacheReserveBytes",
        "SystemCacheResidentBytes",
        "SystemCodeResidentBytes",
        "SystemCodeTotalBytes",
        "SystemDriverResidentBytes",
        "SystemDriverTotalBytes",
        "TransitionFaultsPersec",
        "TransitionPagesRePurposedPersec",
        "WriteCopiesPersec",
    },
    "Win32_OperatingSystem": frozenset(
        {
            "Caption",
            "Version",
            "BuildNumber",
            "CSName",
            "OSArchitecture",
            "FreePhysicalMemory",
            "TotalVisibleMemorySize",
            "FreeVirtualMemory",
            "TotalVirtualMemorySize",
            "LastBootUpTime",
            "OSLanguage",
            "CodeSet",
        }
    ),
    "Win32_ComputerSystem": frozenset(
        {
            "Name",
            "Domain",
            "Manufacturer",
            "Model",
            "NumberOfProcessors",
            "NumberOfLogicalProcessors",
            "TotalPhysicalMemory",
            "HypervisorPresent",
        }
    ),
}
# fmt: on
