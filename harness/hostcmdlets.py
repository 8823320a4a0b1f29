"""What the cmdlets of each Hyper-V host version lack: one table, read by the client's static
checks (harness.hyperv.signatures, tests/static) and by the emulator, which refuses them as
that host would (real-host facts, "Host versions", "PowerShell Direct needs a 2016+ host too").

Sources: MicrosoftDocs/windows-powershell-docs, docsets winserver2012-ps and winserver2012r2-ps
(the Hyper-V module of 2012 has the *-VMSnapshot names only; 2012 R2's Set-VMFirmware has no
-SecureBootTemplate); PowerShell 4.0 on 2012 R2 has no PowerShell Direct: the -VMId/-VMName
sets of New-PSSession and Invoke-Command came with 5.0 on 2016.
"""

from __future__ import annotations

from harness.settings import HostVersion

# Cmdlet names 2012 lacks: it has Get-VMSnapshot, Restore-VMSnapshot, Remove-VMSnapshot, and
# no Generation 2 VMs, so no *-VMFirmware. (2008 R2 SP1 has no Hyper-V module at all; the
# emulator still serves the cmdlets there, as the vehicle of that version's DM rules.)
SINCE_2012R2 = frozenset(
    {
        "get-vmcheckpoint", "restore-vmcheckpoint", "remove-vmcheckpoint", "get-vmfirmware",
        "set-vmfirmware",
    }
)  # fmt: skip
# Parameters 2012 R2 (and older) lack, by cmdlet.
SINCE_2016: dict[str, frozenset[str]] = {
    "New-PSSession": frozenset({"VMId", "VMName"}),
    "Invoke-Command": frozenset({"VMId", "VMName"}),
    "Set-VMFirmware": frozenset({"SecureBootTemplate", "SecureBootTemplateId"}),
}


def command_missing(command: str, version: HostVersion) -> bool:
    """Whether a host of `version` has no command named `command`."""
    old = version in (HostVersion.V2008R2SP1, HostVersion.V2012)
    return old and command.casefold() in SINCE_2012R2


def parameters_missing(
    command: str, used: set[str] | frozenset[str], version: HostVersion
) -> set[str]:
    """The parameters of `used` that `command` lacks on a host of `version`."""
    if version.is_2016_or_later:
        return set()
    for name, added in SINCE_2016.items():
        if name.casefold() == command.casefold():
            folded = {a.casefold() for a in added}
            return {p for p in used if p.casefold() in folded}
    return set()
