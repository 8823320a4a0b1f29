"""The embedded Hyper-V host: DM balancer, emulated VMs and guests, and the WinRM/PSRP endpoint.

- the endpoint: `service` (the emulator as one service), `server`, `wsman`, `psrp`,
  `psobjects`, `connections`, `tls`; what it answers: `cmdlets/`, `wmi/`; `ssh`: guest sshd
- the host: `host` (VMs, states, checkpoints), `balancer` (the DM model), `errors`
- the guests: `guestface` (what every guest backend is: `GuestBackend`, `GuestProgram`, and
  what they share), `backends` (the backends by name, each imported when used), `guestview`
  (what a guest shows its programs), `guestenv`, `integration`, `owner`; the backends:
  `process/` (local processes in the guest's namespaces and cgroup), `qemu/` (QEMU VMs)
"""
