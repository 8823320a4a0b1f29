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
        # Process.Start, not Start-Process: the Process object owns the handle CreateProcess
        # returned, so ExitCode stays readable even when the program exits at once. With
        # Start-Process -PassThru the object is looked up by PID afterwards and reading its
        # Handle throws "process has exited" for an instant exit, losing the exit code and
        # stderr (real-host facts, "A process that exits at once"; PowerShell #5421, #20716).
        # No cmd.exe: no argument or environment value is parsed by a shell. Each argument is
        # quoted by the MSVC rules. The program's stdout and stderr are pipes, copied to files
        # by .NET tasks (no runspace needed) through streams opened with ReadWrite sharing, so
        # readers never meet a sharing violation (real-host facts, "Redirect files").
        $key = [guid]::NewGuid().ToString('N')
        $dir = Join-Path ([IO.Path]::GetTempPath()) ('dmh-' + $key)
        $null = [IO.Directory]::CreateDirectory($dir)
        $out = Join-Path $dir 'stdout.txt'
        $err = Join-Path $dir 'stderr.txt'
        $cwd = Assert-DmhAbsolute ([string]$Arguments.WorkingDirectory) 'WorkingDirectory'
        $null = [IO.Directory]::CreateDirectory($cwd)
        $file = [string]$Arguments.FilePath
        if (-not [IO.Path]::IsPathRooted($file)) {
            $local = Join-Path $cwd $file
            if (Test-Path -LiteralPath $local -PathType Leaf) { $file = $local }
            else { $file = (Get-Command -Name $file -CommandType Application | Select-Object -First 1).Path }
        }
        $quoted = @(@($Arguments.ArgumentList) | ForEach-Object { '"' + (($_ -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"' })
        $info = New-Object System.Diagnostics.ProcessStartInfo
        $info.FileName = $file
        $info.Arguments = $quoted -join ' '
        $info.WorkingDirectory = $cwd
        $info.UseShellExecute = $false
        $info.CreateNoWindow = $true
        $info.RedirectStandardOutput = $true
        $info.RedirectStandardError = $true
        foreach ($name in @($Arguments.Environment.Keys)) { $info.EnvironmentVariables[[string]$name] = [string]$Arguments.Environment[$name] }
        # The code page its output is decoded with: the one given, else the guest's ANSI code
        # page, which most Windows programs (Python included) write redirected output in
        # (real-host facts, "Redirected output").
        $codePage = [int]$Arguments.CodePage
        if ($codePage -le 0) { $codePage = [Globalization.CultureInfo]::CurrentCulture.TextInfo.ANSICodePage }
        $outFile = New-Object IO.FileStream($out, 'Create', 'Write', 'ReadWrite', 1)
        $errFile = New-Object IO.FileStream($err, 'Create', 'Write', 'ReadWrite', 1)
        $p = [Diagnostics.Process]::Start($info)
        $copies = @($p.StandardOutput.BaseStream.CopyToAsync($outFile), $p.StandardError.BaseStream.CopyToAsync($errFile))
        $global:DmhProcesses[$key] = @{ Process = $p; Output = $out; Errors = $err; Files = @($outFile, $errFile); Copies = $copies; CodePage = $codePage }
        [pscustomobject]@{ Key = $key; ProcessId = [int64]$p.Id; OutputPath = $out; CodePage = [int64]$codePage }
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
        $encoding = [Text.Encoding]::GetEncoding([int]$entry.CodePage)
        $text = ''
        # Exit state first: output read after it is complete when the process has exited
        # (once its copies are done; a child still holding the pipes keeps them going).
        $code = $null
        if ($p.HasExited) {
            $code = [int64]$p.ExitCode
            if ([Threading.Tasks.Task]::WaitAll([Threading.Tasks.Task[]]$entry.Copies, 2000)) {
                foreach ($file in $entry.Files) { $file.Dispose() }
            }
        }
        $outLength = [int64]0
        if (Test-Path -LiteralPath $entry.Output) {
            $stream = [IO.File]::Open($entry.Output, 'Open', 'Read', 'ReadWrite')
            try {
                $outLength = $stream.Length
                if ($offset -lt $outLength) {
                    [void]$stream.Seek($offset, 'Begin')
                    $bytes = New-Object byte[] ($outLength - $offset)
                    $read = $stream.Read($bytes, 0, $bytes.Length)
                    # A character cut by the end of what is written so far waits for the next
                    # read: the decoder says how many bytes it holds back.
                    $decoder = $encoding.GetDecoder()
                    $chars = New-Object char[] ($encoding.GetMaxCharCount($read))
                    $count = $decoder.GetChars($bytes, 0, $read, $chars, 0, $false)
                    $text = [string]::new($chars, 0, $count)
                    $held = $read - $encoding.GetByteCount($chars, 0, $count)
                    if ($entry.CodePage -eq 65001) {
                        # UTF-8 replaces each invalid byte with U+FFFD (three bytes): count the cut.
                        $held = 0
                        $i = $read - 1
                        while ($i -ge 0 -and $read - $i -le 4 -and ($bytes[$i] -band 0xC0) -eq 0x80) { $i-- }
                        if ($i -ge 0 -and $bytes[$i] -ge 0xC0) {
                            $need = 2
                            if ($bytes[$i] -ge 0xF0) { $need = 4 } elseif ($bytes[$i] -ge 0xE0) { $need = 3 }
                            if ($read - $i -lt $need) { $held = $read - $i }
                        }
                    }
                    $offset += $read - $held
                }
            } finally { $stream.Dispose() }
        }
        # Once the process has exited, its error output follows its output in one stream.
        # Opened with ReadWrite sharing: [IO.File]::ReadAllBytes asks FileShare.Read and fails
        # while anything still holds the file open for writing.
        if ($null -ne $code -and $offset -ge $outLength -and (Test-Path -LiteralPath $entry.Errors)) {
            $stream = [IO.File]::Open($entry.Errors, 'Open', 'Read', 'ReadWrite')
            try {
                $skip = $offset - $outLength
                if ($stream.Length -gt $skip) {
                    [void]$stream.Seek($skip, 'Begin')
                    $bytes = New-Object byte[] ($stream.Length - $skip)
                    $read = $stream.Read($bytes, 0, $bytes.Length)
                    $text += $encoding.GetString($bytes, 0, $read)
                    $offset += $read
                }
            } finally { $stream.Dispose() }
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
        [pscustomobject]@{ Key = $Arguments.Key; ProcessId = [int64]$p.Id; Running = -not $p.HasExited; ExitCode = $code; Output = $text; NextOffset = $offset; ErrorsFrom = $errorsFrom; MemoryEvent = $memoryEvent; CodePage = [int64]$entry.CodePage }
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
        # One chunk of a file at a byte offset (0 starts the file anew): a PSRP endpoint refuses
        # any received object over MaximumReceivedObjectSizeMB (10 MB by default), at the host
        # and again at a PowerShell Direct guest, so the client sends files in chunks
        # (real-host facts, "10 MB per received object").
        $path = Assert-DmhAbsolute ([string]$Arguments.Path) 'Path'
        $offset = [int64]$Arguments.Offset
        $null = [IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($path))
        $mode = 'OpenOrCreate'
        if ($offset -eq 0) { $mode = 'Create' }
        $bytes = [Convert]::FromBase64String($Arguments.ContentBase64)
        $stream = [IO.File]::Open($path, $mode, 'Write', 'Read')
        try {
            if ($stream.Length -ne $offset) { throw "guest-ops: '$path' holds $($stream.Length) bytes, not the $offset this chunk follows (a chunk was lost)." }
            [void]$stream.Seek($offset, 'Begin')
            $stream.Write($bytes, 0, $bytes.Length)
        } finally { $stream.Dispose() }
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
