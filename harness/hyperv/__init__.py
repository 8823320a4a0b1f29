"""The Hyper-V client: PSRP sessions, host operations and guest channels (pypsrp)."""
