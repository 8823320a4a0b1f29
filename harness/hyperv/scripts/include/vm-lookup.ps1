# One VM by its exact name (real-host facts, "VM name matching"): -Name/-VMName take a string
# as a wildcard pattern when it holds an unescaped * ? or [, and compare it exactly otherwise,
# so no escaping reaches a VM named `vm[1]`. Compared here with -eq (case-insensitive, as
# Hyper-V compares names); Hyper-V allows two VMs with one name, which is refused by name.
function Get-DmhVM([string]$VMName) {
    $found = @(Get-VM | Where-Object { $_.Name -eq $VMName })
    if ($found.Count -eq 0) {
        Write-Error -Message "Hyper-V was unable to find a virtual machine with name `"$VMName`"." -Category ObjectNotFound -TargetObject $VMName -ErrorId ObjectNotFound
    }
    if ($found.Count -gt 1) {
        Write-Error -Message "$($found.Count) virtual machines are named `"$VMName`"; the harness needs one VM per name (rename or remove the others)." -Category InvalidArgument -TargetObject $VMName -ErrorId InvalidParameter
    }
    $found | Select-Object -First 1
}
