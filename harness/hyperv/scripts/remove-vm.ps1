# dmh-script: remove-vm
# Turn a VM off, remove it, and delete the differencing disks the harness created for it;
# what could not be deleted is reported (LeftDisks).
param([Parameter(Mandatory)][string]$Name)
$ErrorActionPreference = 'Stop'
# dmh-include: vm-lookup
$vm = Get-DmhVM $Name
if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
# After a checkpoint HardDrives.Path is the newest .avhdx (real-host facts, "Restore-VMCheckpoint"):
# follow each disk's parents while they are the harness's (dmh-*), so the base differencing
# disk goes too; the template it was made from is not the harness's and stays.
# A checkpoint's drives name the disks frozen for it, which the VM's chain may not pass.
$drives = @($vm.HardDrives) + @(Get-VMCheckpoint -VM $vm | ForEach-Object { $_.HardDrives })
$disks = @()
foreach ($drive in $drives) {
    $path = [string]$drive.Path
    while ($path -and (Split-Path -Leaf $path) -like 'dmh-*') {
        if ($disks -notcontains $path) { $disks += $path }
        $parent = $null
        try { $parent = [string](Get-VHD -Path $path).ParentPath } catch { $parent = $null }
        $path = $parent
    }
}
Remove-VM -VM $vm -Force
# Each deletion is checked: a disk still in use (another VM's chain through it) stays, and is
# reported by path with Windows' reason, never counted as removed.
$removed = 0
$left = @()
foreach ($disk in $disks) {
    $why = ''
    try { Remove-Item -LiteralPath $disk -Force -ErrorAction Stop } catch { $why = $_.Exception.Message }
    if (Test-Path -LiteralPath $disk) { $left += "$disk ($why)" } else { $removed++ }
}
[pscustomobject]@{ Name = $Name; RemovedDisks = $removed; LeftDisks = $left }
