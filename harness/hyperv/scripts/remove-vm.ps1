# dmh-script: remove-vm
# Turn a VM off, remove it, and delete the differencing disks the harness created for it.
param([Parameter(Mandatory)][string]$Name)
$ErrorActionPreference = 'Stop'
# -Name takes wildcards: escape them so a VM name only ever matches (and removes) itself.
$vm = Get-VM -Name ($Name -replace '([`*?\[\]])', '`$1')
if (-not $vm) { Write-Error -Message "Hyper-V was unable to find a virtual machine with name `"$Name`"." -Category ObjectNotFound -TargetObject $Name -ErrorId ObjectNotFound }
if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
$disks = @($vm.HardDrives | Where-Object { (Split-Path -Leaf $_.Path) -like 'dmh-*' } | ForEach-Object Path)
Remove-VM -VM $vm -Force
foreach ($disk in $disks) { Remove-Item -LiteralPath $disk -Force -ErrorAction SilentlyContinue }
[pscustomobject]@{ Name = $Name; RemovedDisks = $disks.Count }
