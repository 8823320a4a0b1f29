# dmh-script: host-facts
# Host facts for the harness: OS, Hyper-V version, memory and the DM balancer counters (§4.2).
param()
$ErrorActionPreference = 'Stop'
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$vmhost = Get-VMHost
$balancer = (Get-Counter -Counter '\Hyper-V Dynamic Memory Balancer(*)\Available Memory', '\Hyper-V Dynamic Memory Balancer(*)\Average Pressure').CounterSamples
[pscustomobject]@{
    ComputerName      = $vmhost.ComputerName
    OSCaption         = $os.Caption
    OSVersion         = $os.Version
    MemoryCapacity    = [int64]$vmhost.MemoryCapacity
    AvailableMemoryMB = [int64](($balancer | Where-Object Path -like '*available memory')[0].CookedValue)
    AveragePressure   = [int64](($balancer | Where-Object Path -like '*average pressure')[0].CookedValue)
}
