# dmh-script: new-vm-from-template
# Create a VM on a differencing disk over a template VHD(X), tagged with the harness run id.
param(
    [Parameter(Mandatory)][string]$Name,
    [string]$TemplatePath,
    [string]$DiskDirectory,
    [Parameter(Mandatory)][int64]$StartupBytes,
    [int]$Generation = 2,
    [string]$Notes = ''
)
$ErrorActionPreference = 'Stop'
if ($TemplatePath) {
    $extension = [IO.Path]::GetExtension($TemplatePath)
    if (-not $DiskDirectory) { $DiskDirectory = Split-Path -Parent $TemplatePath }
    $disk = Join-Path $DiskDirectory ("dmh-" + [guid]::NewGuid().ToString('N') + $extension)
    New-VHD -Path $disk -ParentPath $TemplatePath -Differencing | Out-Null
    $vm = New-VM -Name $Name -MemoryStartupBytes $StartupBytes -Generation $Generation -VHDPath $disk
} else {
    $vm = New-VM -Name $Name -MemoryStartupBytes $StartupBytes -Generation $Generation -NoVHD
}
Set-VM -VM $vm -Notes $Notes
$vm
