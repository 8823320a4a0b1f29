# dmh-script: sample-vms
# One sampling tick for many VMs of this host in one round trip (a controller sampling a
# fleet, harness.fleetsampler): each named VM's memory state and DM counters as sample-vm
# reads them for one VM, without the guest part. The VMs and the counter class are each
# enumerated once per call, not once per VM. The names come as a parameter. A VM that is
# not there (or whose name two VMs have) gets an Error beside the other VMs' samples, never
# instead of them.
param(
    [Parameter(Mandatory)][string[]]$VMNames
)
$ErrorActionPreference = 'Stop'
$all = @(Get-VM)
# The CIM performance class (see sample-vm's perf part): read once, by instance name. A
# class that is not there reads as no counters, never as an error that loses the tick.
$perf = @{}
try {
    foreach ($instance in @(Get-CimInstance -ClassName 'Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM' -ErrorAction Stop)) {
        $perf[[string]$instance.Name] = $instance
    }
} catch { $perf = @{} }
foreach ($name in $VMNames) {
    $found = @($all | Where-Object { $_.Name -eq $name })
    if ($found.Count -ne 1) {
        $problem = "Hyper-V was unable to find a virtual machine with name `"$name`"."
        if ($found.Count -gt 1) { $problem = "$($found.Count) virtual machines are named `"$name`"." }
        [pscustomobject]@{ Name = $name; Error = $problem }
        continue
    }
    $vm = $found | Select-Object -First 1
    $memory = Get-VMMemory -VM $vm
    $counters = @{}
    if ($vm.State -eq 'Running') {
        # Perf-counter instance names are escaped (see sample-vm).
        $instance = $vm.Name.Replace('(', '[').Replace(')', ']').Replace('#', '_').Replace('/', '_').Replace('\', '_')
        $counter = $perf[$instance]
        if ($counter) {
            foreach ($property in 'AddedMemory', 'RemovedMemory', 'MemoryAddOperations', 'MemoryRemoveOperations', 'GuestVisiblePhysicalMemory', 'PhysicalMemory', 'CurrentPressure', 'AveragePressure') {
                $counters[$property] = [int64]$counter.$property
            }
        }
    }
    [pscustomobject]@{
        Name           = $name
        Error          = $null
        State          = [string]$vm.State
        Heartbeat      = [string]$vm.Heartbeat
        MemoryAssigned = [int64]$vm.MemoryAssigned
        MemoryDemand   = [int64]$vm.MemoryDemand
        MemoryStatus   = [string]$vm.MemoryStatus
        Minimum        = [int64]$memory.Minimum
        Maximum        = [int64]$memory.Maximum
        Buffer         = [int]$memory.Buffer
        Counters       = $counters
    }
}
