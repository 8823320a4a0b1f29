"""The embedded Hyper-V host: DM balancer, emulated VMs and guests, and the WinRM/PSRP endpoint."""
