# The PowerShell Direct session to a VM (§1.6), written once for vm-invoke and sample-vm:
# load_script puts this text where a script says '# dmh-include: guest-session'. One
# persistent PSSession per VM (by id: names may repeat or hold wildcards) is kept in this
# runspace and opened again once it broke. The processes guest-ops starts live in that
# session's state, so it is reused, never opened per call.
function Get-DmhGuestSession($VM, [string]$GuestUser, [string]$GuestPassword) {
    if ($null -eq $global:DmhGuestSessions) { $global:DmhGuestSessions = @{} }
    $key = [string]$VM.Id
    $session = $global:DmhGuestSessions[$key]
    if ($null -eq $session -or $session.State -ne 'Opened') {
        $secure = ConvertTo-SecureString -String $GuestPassword -AsPlainText -Force
        $credential = New-Object System.Management.Automation.PSCredential($GuestUser, $secure)
        $session = New-PSSession -VMId $VM.Id -Credential $credential
        $global:DmhGuestSessions[$key] = $session
    }
    $session
}
