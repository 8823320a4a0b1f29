# dmh-script: vm-address
# Where a guest's own WinRM listener is, for the WinRM guest channel: the first IPv4 address
# the host sees on the VM's network adapters (reported by the guest's integration services).
# A VM has one only on a virtual switch (new-vm-from-template -SwitchName). Port, TLS and
# authentication are the guest's listener settings, which the host does not know: the client
# supplies them.
param([Parameter(Mandatory)][string]$VMName)
$ErrorActionPreference = 'Stop'
# dmh-include: vm-lookup
$vm = Get-DmhVM $VMName
$adapters = @(Get-VMNetworkAdapter -VM $vm)
$address = $adapters | ForEach-Object { $_.IPAddresses } | Where-Object { $_ -match '^\d+\.\d+\.\d+\.\d+$' } | Select-Object -First 1
if (-not $address) {
    $switches = @($adapters | Where-Object { $_.SwitchName } | ForEach-Object { $_.SwitchName })
    $why = 'its adapters are on no virtual switch (create it with a switch for the WinRM channel)'
    if ($switches.Count) { $why = 'the guest reports none yet (is it up, with integration services?)' }
    Write-Error -Message "The virtual machine '$VMName' has no IPv4 address: $why." -Category ObjectNotFound -TargetObject $VMName -ErrorId ObjectNotFound
}
[pscustomobject]@{ Address = $address }
