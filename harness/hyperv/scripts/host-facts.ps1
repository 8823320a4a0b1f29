# dmh-script: host-facts
# Host facts for the harness: OS, whether the Hyper-V module the harness drives is there,
# memory and the DM balancer counters (§4.2). Hosts the harness cannot drive are reported, not
# failed, so the client can say which host it is and what it needs: no Hyper-V module (2008 R2
# SP1), no *-VMCheckpoint cmdlets (2012), no PowerShell Direct (before 2016).
param()
$ErrorActionPreference = 'Stop'
# PowerShell 2.0 (2008 R2 SP1 as shipped) has neither Get-CimInstance nor [pscustomobject]:
# answer with what 2.0 has, before anything 3.0 added runs (real-host facts, "Host versions").
if ($PSVersionTable.PSVersion.Major -lt 3) {
    $os = Get-WmiObject -Class Win32_OperatingSystem
    New-Object PSObject -Property @{
        ComputerName = $env:COMPUTERNAME; OSCaption = $os.Caption; OSVersion = $os.Version
        PSVersion = [int64]$PSVersionTable.PSVersion.Major; HyperVModule = $false; CheckpointCmdlets = $false
    }
    return
}
# dmh-include: perf
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$module = Get-Module -ListAvailable -Name Hyper-V | Select-Object -First 1
$checkpoints = $null -ne (Get-Command -Name Get-VMCheckpoint -ErrorAction SilentlyContinue)
$computer = $env:COMPUTERNAME
$capacity = $null
if ($module -and $checkpoints) {
    $vmhost = Get-VMHost
    $computer = $vmhost.ComputerName
    $capacity = [int64]$vmhost.MemoryCapacity
}
# The host-wide instance is "System Balancer"; hosts list others (per NUMA node) beside it.
$balancer = Get-DmhPerf 'Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryBalancer' 'System Balancer'
$available = $null; $pressure = $null
if ($balancer) { $available = [int64]$balancer.AvailableMemory; $pressure = [int64]$balancer.AveragePressure }
[pscustomobject]@{
    ComputerName      = $computer
    PSVersion         = [int64]$PSVersionTable.PSVersion.Major
    OSCaption         = $os.Caption
    OSVersion         = $os.Version
    HyperVModule      = $null -ne $module
    CheckpointCmdlets = $checkpoints
    MemoryCapacity    = $capacity
    AvailableMemoryMB = $available
    AveragePressure   = $pressure
}
