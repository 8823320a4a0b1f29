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
        $dir = Join-Path $env:TEMP ('dmh-' + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $dir | Out-Null
        $info = New-Object System.Diagnostics.ProcessStartInfo
        $info.FileName = $Arguments.FilePath
        $info.Arguments = (@($Arguments.ArgumentList) | ForEach-Object { '"' + ($_ -replace '(\\*)"', '$1$1\"') + '"' }) -join ' '
        $info.UseShellExecute = $false
        $info.RedirectStandardOutput = $false
        if ($Arguments.WorkingDirectory) { $info.WorkingDirectory = $Arguments.WorkingDirectory }
        foreach ($key in @($Arguments.Environment.Keys)) { $info.EnvironmentVariables[$key] = [string]$Arguments.Environment[$key] }
        $out = Join-Path $dir 'output.txt'
        $wrapper = New-Object System.Diagnostics.ProcessStartInfo
        $wrapper.FileName = 'cmd.exe'
        $wrapper.Arguments = '/d /c "' + '"' + $info.FileName + '" ' + $info.Arguments + ' > "' + $out + '" 2>&1"'
        $wrapper.UseShellExecute = $false
        foreach ($key in @($info.EnvironmentVariables.Keys)) { $wrapper.EnvironmentVariables[$key] = $info.EnvironmentVariables[$key] }
        if ($info.WorkingDirectory) { $wrapper.WorkingDirectory = $info.WorkingDirectory }
        $p = [System.Diagnostics.Process]::Start($wrapper)
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
                $bytes = New-Object byte[] ($stream.Length - $offset)
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
            } finally { $stream.Dispose() }
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
