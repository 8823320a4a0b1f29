# dmh-script: new-vm-from-template
# Create a VM on a differencing disk over a template VHD(X), tagged with the harness run id;
# on a virtual switch when SwitchName is given (the WinRM guest channel needs an address).
param(
    [Parameter(Mandatory)][string]$Name,
    [string]$TemplatePath,
    [string]$DiskDirectory,
    [Parameter(Mandatory)][int64]$StartupBytes,
    [int]$Generation = 2,
    [string]$Notes = '',
    [string]$SwitchName = ''
)
$ErrorActionPreference = 'Stop'
# Hyper-V allows two VMs with one name; the harness addresses VMs by name, so it refuses.
if (@(Get-VM | Where-Object { $_.Name -eq $Name }).Count) {
    Write-Error -Message "A virtual machine named `"$Name`" already exists; the harness needs one VM per name." -Category ResourceExists -TargetObject $Name -ErrorId ResourceExists
}
$create = @{ Name = $Name; MemoryStartupBytes = $StartupBytes; Generation = $Generation }
if ($SwitchName) { $create.SwitchName = $SwitchName }
$disk = $null
if ($TemplatePath) {
    $extension = [IO.Path]::GetExtension($TemplatePath)
    if (-not $DiskDirectory) { $DiskDirectory = Split-Path -Parent $TemplatePath }
    $disk = Join-Path $DiskDirectory ("dmh-" + [guid]::NewGuid().ToString('N') + $extension)
    $null = New-VHD -Path $disk -ParentPath $TemplatePath -Differencing
    $create.VHDPath = $disk
} else {
    $create.NoVHD = $true
}
# A New-VM that fails leaves the differencing disk behind: delete it before failing.
try { $vm = New-VM @create }
catch {
    if ($disk) { Remove-Item -LiteralPath $disk -Force -ErrorAction SilentlyContinue }
    throw
}
Set-VM -VM $vm -Notes $Notes
$vm
