"""DM Harness: test software under Hyper-V Dynamic Memory, on a lab host or the emulator."""

__version__ = "0.1.0"
