# dmh-script: vm-invoke
# Run guest-ops inside a VM over PowerShell Direct (§1.6), through the VM's persistent session
# (include/guest-session.ps1). GuestScript is the harness's own guest-ops text, never user input.
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$GuestScript,
    [Parameter(Mandatory)][string]$Operation,
    [hashtable]$Arguments = @{},
    [string]$GuestUser,
    [string]$GuestPassword
)
$ErrorActionPreference = 'Stop'
# dmh-include: vm-lookup
# dmh-include: guest-session
$vm = Get-DmhVM $VMName
$session = Get-DmhGuestSession $vm $GuestUser $GuestPassword
Invoke-Command -Session $session -ArgumentList $GuestScript, $Operation, $Arguments -ScriptBlock {
    param($script, $operation, $arguments)
    & ([scriptblock]::Create($script)) -Operation $operation -Arguments $arguments
}
