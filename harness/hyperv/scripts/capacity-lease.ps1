# dmh-script: capacity-lease
# Capacity leases kept on the host, so runs from different controllers never overcommit it:
# one JSON file under ProgramData holds every lease (owner, run, MB, expiry), read and written
# only under a host-wide named mutex, so two runs cannot both check and both take (LISA #283).
# Expired leases (their owner stopped renewing them: it died) are dropped on every Acquire and
# Sweep. Acquire refuses when the leases plus the request exceed the budget, when the VM limit
# is reached, or when the host's free memory minus the reserve is short; it is idempotent by
# LeaseId, so a retried request never leases twice.
param(
    [Parameter(Mandatory)][ValidateSet('Acquire', 'Renew', 'Release', 'List', 'Sweep')][string]$Action,
    [string]$LeaseId = '',
    [string]$Owner = '',
    [string]$RunId = '',
    [int64]$MB = 0,
    [int64]$BudgetMB = 0,
    [int64]$ReserveMB = 2048,
    [int]$VmLimit = 0,
    [int]$TtlSeconds = 60
)
$ErrorActionPreference = 'Stop'
$dir = Join-Path $env:ProgramData 'DmHarness'
$file = Join-Path $dir 'leases.json'
$mutex = New-Object -TypeName System.Threading.Mutex -ArgumentList $false, 'Global\DmHarnessLeases'
$owned = $false
try {
    # A previous holder that died leaves the mutex abandoned: it is ours then, and the file
    # was written whole or not at all (replaced, never rewritten in place).
    try { $owned = $mutex.WaitOne(30000) } catch [System.Threading.AbandonedMutexException] { $owned = $true }
    if (-not $owned) { throw 'capacity-lease: another run held Global\DmHarnessLeases for 30 s' }
    $null = [IO.Directory]::CreateDirectory($dir)
    $now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
    $all = @()
    if (Test-Path -LiteralPath $file) {
        # Shared for writing too, as every file read here is (the mutex keeps writers out).
        $stream = [IO.File]::Open($file, 'Open', 'Read', 'ReadWrite')
        try { $text = (New-Object -TypeName IO.StreamReader -ArgumentList $stream).ReadToEnd() } finally { $stream.Dispose() }
        # Windows PowerShell 5.1 writes a JSON array as one object: enumerate it.
        if ($text.Trim()) { $all = @(ConvertFrom-Json -InputObject $text | ForEach-Object { $_ }) }
    }
    $live = @($all | Where-Object { [int64]$_.Expires -gt $now })
    $expired = @($all | Where-Object { [int64]$_.Expires -le $now })
    $keep = $all
    $granted = $false
    $reason = ''
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $freeMB = [int64]([int64]$os.FreePhysicalMemory / 1024)
    if ($Action -eq 'Acquire' -or $Action -eq 'Sweep') { $keep = $live }
    if ($Action -eq 'Acquire') {
        $leased = [int64]0
        foreach ($lease in $live) { $leased += [int64]$lease.MB }
        $mine = @($live | Where-Object { $_.Id -eq $LeaseId })
        if ($mine.Count -gt 0) {
            $granted = $true
        } elseif ($VmLimit -gt 0 -and $live.Count + 1 -gt $VmLimit) {
            $reason = "its VM limit is reached ($($live.Count) of $VmLimit leased)"
        } elseif ($BudgetMB -gt 0 -and $leased + $MB -gt $BudgetMB) {
            $reason = "its budget is short: $leased MB of $BudgetMB MB leased, $MB MB asked"
        } elseif ($freeMB - $ReserveMB -lt $MB) {
            $reason = "its free memory is short: $freeMB MB free, $ReserveMB MB reserve, $MB MB asked"
        } else {
            $keep = @($live) + @([pscustomobject]@{
                Id = $LeaseId; Owner = $Owner; RunId = $RunId; MB = $MB
                Created = $now; Expires = $now + $TtlSeconds
            })
            $granted = $true
        }
    } elseif ($Action -eq 'Renew') {
        foreach ($lease in $live) {
            if ($lease.Id -eq $LeaseId) { $lease.Expires = $now + $TtlSeconds; $granted = $true }
        }
        if (-not $granted) { $reason = "lease $LeaseId is gone: it expired before it was renewed" }
    } elseif ($Action -eq 'Release') {
        $keep = @($all | Where-Object { $_.Id -ne $LeaseId })
        $granted = $keep.Count -lt $all.Count
    }
    if ($Action -ne 'List') {
        # Written beside the file, then swapped in: a reader never sees half a file.
        $temp = "$file.tmp"
        [IO.File]::WriteAllText($temp, (ConvertTo-Json -InputObject @($keep) -Depth 3 -Compress))
        if (Test-Path -LiteralPath $file) { [IO.File]::Replace($temp, $file, $null) } else { [IO.File]::Move($temp, $file) }
    }
    $shown = @($keep | Where-Object { [int64]$_.Expires -gt $now })
    $leasedNow = [int64]0
    foreach ($lease in $shown) { $leasedNow += [int64]$lease.MB }
    # The leases themselves only for List and Sweep: a heartbeat's Renew stays small however
    # many leases the host holds.
    $listed = @(); $dropped = @()
    if ($Action -eq 'List' -or $Action -eq 'Sweep') { $listed = @($shown); $dropped = @($expired) }
    [pscustomobject]@{
        Granted    = $granted
        LeaseId    = $LeaseId
        Reason     = $reason
        FreeMB     = $freeMB
        LeasedMB   = $leasedNow
        LeaseCount = [int64]$shown.Count
        Leases     = $listed
        Expired    = $dropped
    }
} finally {
    if ($owned) { $mutex.ReleaseMutex() }
    $mutex.Dispose()
}
