# dmh-script: vm-secure-boot
# A new Generation 2 VM's Secure Boot for its guest OS: a Linux guest boots only with the
# template MicrosoftUEFICertificateAuthority, or with Secure Boot off (real-host facts).
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][ValidateSet('MicrosoftWindows', 'MicrosoftUEFICertificateAuthority', 'Off')][string]$SecureBoot
)
$ErrorActionPreference = 'Stop'
# dmh-include: vm-lookup
$vm = Get-DmhVM $VMName
if ($vm.Generation -eq 2) {
    if ($SecureBoot -eq 'Off') { Set-VMFirmware -VM $vm -EnableSecureBoot Off }
    else { Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplate $SecureBoot }
}
[pscustomobject]@{ Name = $vm.Name; Generation = $vm.Generation; SecureBoot = $SecureBoot }
