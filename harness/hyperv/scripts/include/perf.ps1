# Counters through the CIM performance classes, whose names do not depend on the OS language
# and which return at once (Get-Counter is localized and waits a second per call, real-host
# facts "Get-Counter waits"). Class and property names: reference/real-host-and-runtime-facts.md,
# "CIM performance classes", checked against Microsoft's generated root\CIMV2 bindings
# (github.com/microsoft/wmi, pkg/.../cimv2: Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM
# AddedMemory, RemovedMemory, MemoryAddOperations, MemoryRemoveOperations, CurrentPressure,
# AveragePressure, PhysicalMemory, GuestVisiblePhysicalMemory; Win32_PerfRawData_PerfOS_Memory
# AvailableMBytes, CommittedBytes; Win32_PerfRawData_Counters_HyperVDynamicMemoryIntegrationService
# MaximumMemoryMbytes) and public listings of ..._HyperVDynamicMemoryBalancer (AvailableMemory,
# AveragePressure, SystemCurrentPressure; jcapellman/CWMII, simonferquel/simcim). Raw values:
# these are counts, not rates, so raw equals cooked. A class that is not there (no DM integration service in the
# guest) or an instance that is not there reads as $null ("not available"), never as an error
# that would lose the rest of the sample.
function Get-DmhPerf([string]$ClassName, [string]$InstanceName = '') {
    try { $all = @(Get-CimInstance -ClassName $ClassName -ErrorAction Stop) } catch { return $null }
    if ($InstanceName) { $all = @($all | Where-Object { $_.Name -eq $InstanceName }) }
    $all | Select-Object -First 1
}
