# dmh-script: guest-ops
# Operations inside a guest: run directly over WinRM, or through PowerShell Direct (vm-invoke).
param(
    [Parameter(Mandatory)][ValidateSet('StartProcess', 'ProcessStats', 'ProcessResult', 'StopProcess', 'WriteFile', 'Counters')][string]$Operation,
    [hashtable]$Arguments = @{}
)
$ErrorActionPreference = 'Stop'
function Get-DmhProcessStats([int]$ProcessId) {
    $p = Get-Process -Id $ProcessId -ErrorAction SilentlyContinue
    if ($null -eq $p -or $p.HasExited) {
        return [pscustomobject]@{ ProcessId = $ProcessId; Running = $false; WorkingSet = [int64]0; PrivateBytes = [int64]0 }
    }
    [pscustomobject]@{ ProcessId = $ProcessId; Running = $true; WorkingSet = [int64]$p.WorkingSet64; PrivateBytes = [int64]$p.PrivateMemorySize64 }
}
switch ($Operation) {
    'StartProcess' {
        # Start-Process runs the program itself (no cmd.exe), so no argument or environment
        # value is ever parsed by a shell. Each argument is quoted by the MSVC rules.
        $dir = Join-Path $env:TEMP ('dmh-' + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $dir | Out-Null
        $out = Join-Path $dir 'output.txt'
        $quoted = @(@($Arguments.ArgumentList) | ForEach-Object { '"' + (($_ -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"' })
        $start = @{ FilePath = $Arguments.FilePath; RedirectStandardOutput = $out; RedirectStandardError = "$out.err"; NoNewWindow = $true; PassThru = $true }
        if ($quoted.Count) { $start.ArgumentList = $quoted -join ' ' }
        if ($Arguments.WorkingDirectory) { $start.WorkingDirectory = $Arguments.WorkingDirectory }
        $saved = @{}
        foreach ($key in @($Arguments.Environment.Keys)) {
            $saved[$key] = [Environment]::GetEnvironmentVariable($key, 'Process')
            [Environment]::SetEnvironmentVariable($key, [string]$Arguments.Environment[$key], 'Process')
        }
        try { $p = Start-Process @start }
        finally { foreach ($key in $saved.Keys) { [Environment]::SetEnvironmentVariable($key, $saved[$key], 'Process') } }
        [pscustomobject]@{ ProcessId = $p.Id; OutputPath = $out }
    }
    'ProcessStats' { Get-DmhProcessStats $Arguments.ProcessId }
    'ProcessResult' {
        # Output from a byte offset, so a sampler can fetch only what is new each tick.
        $p = Get-Process -Id $Arguments.ProcessId -ErrorAction SilentlyContinue
        $offset = [int64]$Arguments.Offset
        $text = ''
        # Exit state first: output read after it is complete when the process has exited.
        $code = $null
        if ($null -ne $p -and $p.HasExited) { $code = $p.ExitCode }
        $running = $null -ne $p -and -not $p.HasExited
        if ($Arguments.OutputPath -and (Test-Path -LiteralPath $Arguments.OutputPath)) {
            $stream = [IO.File]::Open($Arguments.OutputPath, 'Open', 'Read', 'ReadWrite')
            try {
                [void]$stream.Seek($offset, 'Begin')
                $bytes = New-Object byte[] ([Math]::Max([int64]0, $stream.Length - $offset))
                $read = $stream.Read($bytes, 0, $bytes.Length)
                # A character cut by the end of what is written so far waits for the next read.
                $i = $read - 1
                while ($i -ge 0 -and $read - $i -le 4 -and ($bytes[$i] -band 0xC0) -eq 0x80) { $i-- }
                if ($i -ge 0 -and $bytes[$i] -ge 0xC0) {
                    $need = if ($bytes[$i] -ge 0xF0) { 4 } elseif ($bytes[$i] -ge 0xE0) { 3 } else { 2 }
                    if ($read - $i -lt $need) { $read = $i }
                }
                $text = [Text.Encoding]::UTF8.GetString($bytes, 0, $read)
                $offset += $read
                $outLength = $stream.Length
            } finally { $stream.Dispose() }
            # Once the process has exited, its error output follows its output in one stream.
            $errPath = $Arguments.OutputPath + '.err'
            if ($null -ne $code -and $offset -ge $outLength -and (Test-Path -LiteralPath $errPath)) {
                $errBytes = [IO.File]::ReadAllBytes($errPath)
                $skip = $offset - $outLength
                if ($errBytes.Length -gt $skip) {
                    $text += [Text.Encoding]::UTF8.GetString($errBytes, $skip, $errBytes.Length - $skip)
                    $offset += $errBytes.Length - $skip
                }
            }
        }
        [pscustomobject]@{ ProcessId = $Arguments.ProcessId; Running = $running; ExitCode = $code; Output = $text; NextOffset = $offset }
    }
    'StopProcess' {
        & taskkill.exe /PID $Arguments.ProcessId /T /F 2>&1 | Out-Null
        [pscustomobject]@{ ProcessId = $Arguments.ProcessId; Stopped = $true }
    }
    'WriteFile' {
        $parent = Split-Path -Parent $Arguments.Path
        if ($parent -and -not (Test-Path -LiteralPath $parent)) { New-Item -ItemType Directory -Path $parent | Out-Null }
        [IO.File]::WriteAllBytes($Arguments.Path, [Convert]::FromBase64String($Arguments.ContentBase64))
        [pscustomobject]@{ Path = $Arguments.Path; Length = (Get-Item -LiteralPath $Arguments.Path).Length }
    }
    'Counters' {
        $samples = (Get-Counter -Counter '\Memory\Available MBytes', '\Memory\Committed Bytes', '\Hyper-V Dynamic Memory Integration Service\Maximum Memory, Mbytes' -ErrorAction SilentlyContinue).CounterSamples
        $value = { param($name) [int64](($samples | Where-Object Path -like "*$name")[0].CookedValue) }
        [pscustomobject]@{
            TotalPhysicalMemory = [int64](Get-CimInstance -ClassName Win32_ComputerSystem).TotalPhysicalMemory
            AvailableMBytes     = & $value 'available mbytes'
            CommittedBytes      = & $value 'committed bytes'
            MaximumMemoryMBytes = & $value 'maximum memory, mbytes'
        }
    }
}
