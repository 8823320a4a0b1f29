# dmh-script: vm-invoke
# Run guest-ops inside a VM over PowerShell Direct (§1.6), reusing one persistent PSSession per
# VM kept in this runspace. GuestScript is the harness's own guest-ops text, never user input.
param(
    [Parameter(Mandatory)][string]$VMName,
    [Parameter(Mandatory)][string]$GuestScript,
    [Parameter(Mandatory)][string]$Operation,
    [hashtable]$Arguments = @{},
    [string]$GuestUser,
    [string]$GuestPassword
)
$ErrorActionPreference = 'Stop'
if ($null -eq $global:DmhGuestSessions) { $global:DmhGuestSessions = @{} }
$session = $global:DmhGuestSessions[$VMName]
if ($null -eq $session -or $session.State -ne 'Opened') {
    $secure = ConvertTo-SecureString -String $GuestPassword -AsPlainText -Force
    $credential = New-Object System.Management.Automation.PSCredential($GuestUser, $secure)
    $session = New-PSSession -VMName $VMName -Credential $credential
    $global:DmhGuestSessions[$VMName] = $session
}
Invoke-Command -Session $session -ArgumentList $GuestScript, $Operation, $Arguments -ScriptBlock {
    param($script, $operation, $arguments)
    & ([scriptblock]::Create($script)) -Operation $operation -Arguments $arguments
}
