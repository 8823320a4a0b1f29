# dmh-script: guest-ops
# Operations inside a guest: run directly over WinRM, or through PowerShell Direct (vm-invoke,
# sample-vm). Either way it runs in one persistent runspace, whose session state keeps the
# processes it started (real-host facts, "Exit codes of started processes"): a process is
# found again by the key StartProcess returned, never by its PID, which Windows reuses once
# the process has exited.
param(
    [Parameter(Mandatory)][ValidateSet('StartProcess', 'ProcessStats', 'ProcessResult', 'StopProcess', 'WriteFile', 'Counters', 'Limits')][string]$Operation,
    [hashtable]$Arguments = @{}
)
$ErrorActionPreference = 'Stop'
# dmh-include: perf
if ($null -eq $global:DmhProcesses) { $global:DmhProcesses = @{} }

# Paths must be absolute: PowerShell's location (cmdlets) and the process's current directory
# (.NET calls, system32 in a remote session) differ (real-host facts, "Two current directories").
function Assert-DmhAbsolute([string]$Path, [string]$Name) {
    if ($Path -notmatch '^(?:[A-Za-z]:[\\/]|\\\\)') {
        throw "guest-ops: $Name '$Path' is not an absolute path (a drive letter and a root, or a UNC path); relative paths resolve differently for cmdlets and .NET."
    }
    $Path
}

function Get-DmhEntry([hashtable]$Arguments) {
    $key = [string]$Arguments.Key
    $entry = $global:DmhProcesses[$key]
    if ($null -eq $entry) {
        throw "guest-ops: no process with key '$key' in this session (the guest session was opened again, or the guest restarted): its exit code and output are lost."
    }
    $entry
}

switch ($Operation) {
    'StartProcess' {
        # Start-Process runs the program itself (no cmd.exe), so no argument or environment
        # value is ever parsed by a shell. Each argument is quoted by the MSVC rules.
        $key = [guid]::NewGuid().ToString('N')
        $dir = Join-Path ([IO.Path]::GetTempPath()) ('dmh-' + $key)
        $null = [IO.Directory]::CreateDirectory($dir)
        $out = Join-Path $dir 'stdout.txt'
        $err = Join-Path $dir 'stderr.txt'
        $cwd = Assert-DmhAbsolute ([string]$Arguments.WorkingDirectory) 'WorkingDirectory'
        $null = [IO.Directory]::CreateDirectory($cwd)
        $quoted = @(@($Arguments.ArgumentList) | ForEach-Object { '"' + (($_ -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"' })
        $start = @{ FilePath = $Arguments.FilePath; WorkingDirectory = $cwd; RedirectStandardOutput = $out; RedirectStandardError = $err; NoNewWindow = $true; PassThru = $true }
        if ($quoted.Count) { $start.ArgumentList = $quoted -join ' ' }
        $saved = @{}
        foreach ($name in @($Arguments.Environment.Keys)) {
            $saved[$name] = [Environment]::GetEnvironmentVariable($name, 'Process')
            [Environment]::SetEnvironmentVariable($name, [string]$Arguments.Environment[$name], 'Process')
        }
        try { $p = Start-Process @start }
        finally { foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name], 'Process') } }
        # Reading Handle while the process runs keeps its exit code readable after it exits
        # (PowerShell #5421, #20716), and an open handle keeps Windows from reusing its PID.
        $null = $p.Handle
        $global:DmhProcesses[$key] = @{ Process = $p; Output = $out; Errors = $err }
        [pscustomobject]@{ Key = $key; ProcessId = [int64]$p.Id; OutputPath = $out }
    }
    'ProcessStats' {
        $entry = Get-DmhEntry $Arguments
        $p = $entry.Process
        $p.Refresh()
        if ($p.HasExited) {
            [pscustomobject]@{ Key = $Arguments.Key; ProcessId = [int64]$p.Id; Running = $false; WorkingSet = [int64]0; PrivateBytes = [int64]0 }
        } else {
            [pscustomobject]@{ Key = $Arguments.Key; ProcessId = [int64]$p.Id; Running = $true; WorkingSet = [int64]$p.WorkingSet64; PrivateBytes = [int64]$p.PrivateMemorySize64 }
        }
    }
    'ProcessResult' {
        # Output from a byte offset, so a sampler can fetch only what is new each tick.
        $entry = Get-DmhEntry $Arguments
        $p = $entry.Process
        $offset = [int64]$Arguments.Offset
        $text = ''
        # Exit state first: output read after it is complete when the process has exited.
        $code = $null
        if ($p.HasExited) { $code = [int64]$p.ExitCode }
        $outLength = [int64]0
        if (Test-Path -LiteralPath $entry.Output) {
            $stream = [IO.File]::Open($entry.Output, 'Open', 'Read', 'ReadWrite')
            try {
                $outLength = $stream.Length
                if ($offset -lt $outLength) {
                    [void]$stream.Seek($offset, 'Begin')
                    $bytes = New-Object byte[] ($outLength - $offset)
                    $read = $stream.Read($bytes, 0, $bytes.Length)
                    # A character cut by the end of what is written so far waits for the next read.
                    $i = $read - 1
                    while ($i -ge 0 -and $read - $i -le 4 -and ($bytes[$i] -band 0xC0) -eq 0x80) { $i-- }
                    if ($i -ge 0 -and $bytes[$i] -ge 0xC0) {
                        $need = 2
                        if ($bytes[$i] -ge 0xF0) { $need = 4 } elseif ($bytes[$i] -ge 0xE0) { $need = 3 }
                        if ($read - $i -lt $need) { $read = $i }
                    }
                    $text = [Text.Encoding]::UTF8.GetString($bytes, 0, $read)
                    $offset += $read
                }
            } finally { $stream.Dispose() }
        }
        # Once the process has exited, its error output follows its output in one stream.
        if ($null -ne $code -and $offset -ge $outLength -and (Test-Path -LiteralPath $entry.Errors)) {
            $errBytes = [IO.File]::ReadAllBytes($entry.Errors)
            $skip = $offset - $outLength
            if ($errBytes.Length -gt $skip) {
                $text += [Text.Encoding]::UTF8.GetString($errBytes, $skip, $errBytes.Length - $skip)
                $offset += $errBytes.Length - $skip
            }
        }
        # Once it has exited: where its error output starts, and what Windows logged about
        # memory running out since it started (Resource-Exhaustion-Detector, event 2004:
        # "low virtual memory condition", naming the programs that used the most).
        $errorsFrom = $null; $memoryEvent = $null
        if ($null -ne $code) {
            $errorsFrom = $outLength
            $logged = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; ProviderName = 'Microsoft-Windows-Resource-Exhaustion-Detector'; Id = 2004; StartTime = $p.StartTime } -MaxEvents 1 -ErrorAction SilentlyContinue)
            if ($logged.Count -gt 0) { $memoryEvent = 'commit limit reached: ' + ($logged | Select-Object -First 1).Message.Split("`n")[0].Trim() }
        }
        [pscustomobject]@{ Key = $Arguments.Key; ProcessId = [int64]$p.Id; Running = -not $p.HasExited; ExitCode = $code; Output = $text; NextOffset = $offset; ErrorsFrom = $errorsFrom; MemoryEvent = $memoryEvent }
    }
    'StopProcess' {
        # The whole tree: taskkill /T. In 5.1 a native command's redirected stderr line is a
        # terminating error under Stop (PowerShell #3996), and taskkill writes one whenever a
        # process of the tree is already gone: run it with a local Continue and read its code.
        $entry = Get-DmhEntry $Arguments
        $p = $entry.Process
        if (-not $p.HasExited) {
            $kill = & {
                $ErrorActionPreference = 'Continue'
                $said = (& taskkill.exe /PID $p.Id /T /F 2>&1 | Out-String)
                [pscustomobject]@{ Code = $LASTEXITCODE; Said = $said }
            }
            $null = $p.WaitForExit(10000)
            if (-not $p.HasExited) {
                throw "guest-ops: taskkill could not stop process $($p.Id) (exit code $($kill.Code)): $($kill.Said.Trim())"
            }
        }
        [pscustomobject]@{ Key = $Arguments.Key; ProcessId = [int64]$p.Id; Stopped = $true; ExitCode = [int64]$p.ExitCode }
    }
    'WriteFile' {
        $path = Assert-DmhAbsolute ([string]$Arguments.Path) 'Path'
        $null = [IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($path))
        [IO.File]::WriteAllBytes($path, [Convert]::FromBase64String($Arguments.ContentBase64))
        [pscustomobject]@{ Path = $path; Length = [int64](New-Object IO.FileInfo($path)).Length }
    }
    'Counters' {
        $system = Get-DmhPerf 'Win32_ComputerSystem'
        $memory = Get-DmhPerf 'Win32_PerfRawData_PerfOS_Memory'
        $dm = Get-DmhPerf 'Win32_PerfRawData_Counters_HyperVDynamicMemoryIntegrationService'
        $total = $null; $available = $null; $committed = $null; $maximum = $null
        if ($system) { $total = [int64]$system.TotalPhysicalMemory }
        if ($memory) { $available = [int64]$memory.AvailableMBytes; $committed = [int64]$memory.CommittedBytes }
        if ($dm) { $maximum = [int64]$dm.MaximumMemoryMbytes }
        [pscustomobject]@{ TotalPhysicalMemory = $total; AvailableMBytes = $available; CommittedBytes = $committed; MaximumMemoryMBytes = $maximum }
    }
    'Limits' {
        # WinRM's per-shell memory quota counts the shell's child processes: a larger load
        # started over WinRM is killed (real-host facts, "WinRM quota").
        $quota = $null
        $item = Get-Item -LiteralPath 'WSMan:\localhost\Shell\MaxMemoryPerShellMB' -ErrorAction SilentlyContinue
        if ($item) { $quota = [int64]$item.Value }
        [pscustomobject]@{ MaxMemoryPerShellMB = $quota }
    }
}
