# dmh-script: vm-address
# Where a guest's own WinRM listener is, for the WinRM guest channel: the first IPv4 address
# the host sees on the VM's network adapters (reported by the guest's integration services).
param([Parameter(Mandatory)][string]$VMName)
$ErrorActionPreference = 'Stop'
# -Name takes wildcards: escape them so a VM name only ever matches itself.
$vm = Get-VM -Name ($VMName -replace '([`*?\[\]])', '`$1')
$address = @($vm | Get-VMNetworkAdapter | ForEach-Object IPAddresses | Where-Object { $_ -match '^\d+\.\d+\.\d+\.\d+$' })[0]
if (-not $address) {
    Write-Error -Message "The virtual machine '$VMName' has no IP address." -Category ObjectNotFound -TargetObject $VMName -ErrorId ObjectNotFound
}
[pscustomobject]@{ Address = $address; Port = 5986; Path = 'wsman'; Ssl = $true; Auth = 'negotiate' }
