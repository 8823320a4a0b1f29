"""Real-kernel guests: the emulated host's Linux VMs as QEMU VMs whose memory the DM model
really hot-adds (virtio-mem) and balloons (virtio-balloon). Chosen with
`--dm-guest-backend qemu` (or DMH_GUEST_BACKEND=qemu); see reference/qemu-guest-recipe.md."""
