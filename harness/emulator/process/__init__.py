"""The process guest backend (the default): a VM's guest OS as real local processes in their
own namespaces and memory cgroup (sandbox/), their memory measured (guestmem, guestproc) and
the guest's memory view published where its programs read it (guest)."""
