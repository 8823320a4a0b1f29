# The PowerShell Direct session to a VM (§1.6), written once for vm-invoke and sample-vm:
# load_script puts this text where a script says '# dmh-include: guest-session'. One
# persistent PSSession per VM is kept in this runspace and opened again once it broke.
function Get-DmhGuestSession([string]$VMName, [string]$GuestUser, [string]$GuestPassword) {
    if ($null -eq $global:DmhGuestSessions) { $global:DmhGuestSessions = @{} }
    $session = $global:DmhGuestSessions[$VMName]
    if ($null -eq $session -or $session.State -ne 'Opened') {
        $secure = ConvertTo-SecureString -String $GuestPassword -AsPlainText -Force
        $credential = New-Object System.Management.Automation.PSCredential($GuestUser, $secure)
        $session = New-PSSession -VMName $VMName -Credential $credential
        $global:DmhGuestSessions[$VMName] = $session
    }
    $session
}
