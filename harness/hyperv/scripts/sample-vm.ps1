# dmh-script: sample-vm
# One sampling tick in one round trip, with no wait inside: the VM's memory state and DM
# counters (§1.3, §4.1) read through the CIM performance class, and, when GuestScript is
# given, the guest's counters and the app's stats over PowerShell Direct (the persistent
# session vm-invoke uses). A part that fails (a guest still booting, a counter instance not
# there yet) is reported beside the rest, never instead of it.
param(
    [Parameter(Mandatory)][string]$VMName,
    [string]$Key = '',
    [int64]$OutputOffset = 0,
    [string]$GuestScript = '',
    [string]$GuestUser,
    [string]$GuestPassword
)
$ErrorActionPreference = 'Stop'
# dmh-include: vm-lookup
# dmh-include: perf
# dmh-include: guest-session
$vm = Get-DmhVM $VMName
$memory = Get-VMMemory -VM $vm
$counters = @{}
$guest = $null
$app = $null
$output = $null
$guestError = $null
if ($vm.State -eq 'Running') {
    # The VM's instance is named after it with ( ) # / \ replaced: a name compared as it is
    # would find no instance for such a VM (real-host facts, "Perf-counter instance names are
    # escaped"; learn.microsoft.com, PerformanceCounter.InstanceName).
    $instance = $vm.Name.Replace('(', '[').Replace(')', ']').Replace('#', '_').Replace('/', '_').Replace('\', '_')
    $perf = Get-DmhPerf 'Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM' $instance
    if ($perf) {
        foreach ($name in 'AddedMemory', 'RemovedMemory', 'MemoryAddOperations', 'MemoryRemoveOperations', 'GuestVisiblePhysicalMemory', 'PhysicalMemory', 'CurrentPressure', 'AveragePressure') {
            $counters[$name] = [int64]$perf.$name
        }
    }
    if ($GuestScript) {
        try {
            $session = Get-DmhGuestSession $vm $GuestUser $GuestPassword
            $guest, $app, $output = Invoke-Command -Session $session -ArgumentList $GuestScript, $Key, $OutputOffset -ScriptBlock {
                param($script, $key, $outputOffset)
                $ops = [scriptblock]::Create($script)
                & $ops -Operation Counters
                if ($key) {
                    & $ops -Operation ProcessStats -Arguments @{ Key = $key }
                    & $ops -Operation ProcessResult -Arguments @{ Key = $key; Offset = $outputOffset }
                } else { $null; $null }
            }
        } catch { $guestError = $_.Exception.Message }
    }
}
[pscustomobject]@{
    State          = [string]$vm.State
    Heartbeat      = [string]$vm.Heartbeat
    MemoryAssigned = [int64]$vm.MemoryAssigned
    MemoryDemand   = [int64]$vm.MemoryDemand
    MemoryStatus   = [string]$vm.MemoryStatus
    Minimum        = [int64]$memory.Minimum
    Maximum        = [int64]$memory.Maximum
    Buffer         = [int]$memory.Buffer
    Counters       = $counters
    Guest          = $guest
    App            = $app
    Output         = $output
    GuestError     = $guestError
}
