# dmh-script: sample-vm
# One sampling tick in one round trip: the VM's memory state and DM counters (§1.3, §4.1), and,
# when GuestScript is given, the guest's counters and the app's stats over PowerShell Direct
# (the same persistent session vm-invoke uses: include/guest-session.ps1).
param(
    [Parameter(Mandatory)][string]$VMName,
    [int]$ProcessId = 0,
    [string]$OutputPath = '',
    [int64]$OutputOffset = 0,
    [string]$GuestScript = '',
    [string]$GuestUser,
    [string]$GuestPassword
)
$ErrorActionPreference = 'Stop'
# dmh-include: guest-session
# -Name/-VMName take wildcards: escape them so a VM name only ever matches itself.
$pattern = $VMName -replace '([`*?\[\]])', '`$1'
$vm = Get-VM -Name $pattern
if (-not $vm) { Write-Error -Message "Hyper-V was unable to find a virtual machine with name `"$VMName`"." -Category ObjectNotFound -TargetObject $VMName -ErrorId ObjectNotFound }
$memory = Get-VMMemory -VMName $pattern
$counters = @{}
$guest = $null
$app = $null
$output = $null
if ($vm.State -eq 'Running') {
    $path = '\Hyper-V Dynamic Memory VM(' + $VMName + ')\*'
    foreach ($s in (Get-Counter -Counter $path -ErrorAction SilentlyContinue).CounterSamples) {
        $counters[(Split-Path -Leaf $s.Path)] = [int64]$s.CookedValue
    }
    if ($GuestScript) {
        $session = Get-DmhGuestSession $VMName $GuestUser $GuestPassword
        $guest, $app, $output = Invoke-Command -Session $session -ArgumentList $GuestScript, $ProcessId, $OutputPath, $OutputOffset -ScriptBlock {
            param($script, $processId, $outputPath, $outputOffset)
            $ops = [scriptblock]::Create($script)
            & $ops -Operation Counters
            if ($processId) {
                & $ops -Operation ProcessStats -Arguments @{ ProcessId = $processId }
                & $ops -Operation ProcessResult -Arguments @{ ProcessId = $processId; OutputPath = $outputPath; Offset = $outputOffset }
            } else { $null; $null }
        }
    }
}
[pscustomobject]@{
    State          = [string]$vm.State
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
}
