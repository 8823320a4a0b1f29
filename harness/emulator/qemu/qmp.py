"""QMP for one VM with the qemu.qmp library: one connection per VM (QMP serves one client at
a time, recipe Pitfalls), on one event loop thread shared by every VM of the process, so any
thread may call. Sizes are polled exactly (qom-get size, query-balloon), never inferred from
the lagging MEMORY_DEVICE_SIZE_CHANGE / BALLOON_CHANGE events (recipe §3).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from harness.emulator.qemu.errors import QemuError
from harness.units import MB

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
MEM_DEVICE = "/machine/peripheral/vm0"  # the virtio-mem-pci device (id=vm0)


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="dmh-qmp", daemon=True).start()
        return _loop


class QmpDriver:
    """The QMP connection of one VM. Thread-safe."""

    def __init__(self, path: Path, vm: str, deadline: float) -> None:
        try:
            from qemu.qmp import QMPClient
        except ImportError as exc:  # an optional extra: say how to get it
            raise QemuError(
                "the QEMU backend needs qemu.qmp: pip install 'dm-harness[qemu]'", vm=vm
            ) from exc
        self.vm = vm
        self._client = QMPClient(vm)
        # qemu.qmp logs every refused attempt as an error; while QEMU starts they are expected.
        quiet = logging.getLogger(f"qemu.qmp.protocol.{vm}")
        quiet.setLevel(logging.CRITICAL)
        try:
            while True:
                try:
                    self._run(self._client.connect(str(path)), 5.0)
                    return
                except Exception as exc:  # qemu.qmp raises ConnectError and OSErrors
                    if time.monotonic() >= deadline:
                        raise QemuError(
                            f"cannot connect to QMP: {exc}", vm=vm, stage="qmp"
                        ) from exc
                    time.sleep(0.05)  # poll interval while QEMU makes its socket
        finally:
            quiet.setLevel(logging.NOTSET)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, _event_loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise QemuError("QMP did not answer in time", vm=self.vm, stage="qmp") from exc

    def execute(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        try:
            return self._run(self._client.execute(command, arguments or None), timeout)
        except QemuError:
            raise
        except Exception as exc:
            raise QemuError(f"QMP {command} failed: {exc}", vm=self.vm, stage="qmp") from exc

    # -- memory -----------------------------------------------------------------------
    def request_plugged(self, size_mb: int) -> None:
        """virtio-mem: ask the guest to plug this much (2 MB blocks)."""
        self.execute("qom-set", path=MEM_DEVICE, property="requested-size", value=size_mb * MB)

    def plugged_mb(self) -> int:
        """virtio-mem: what the guest has really plugged."""
        return int(self.execute("qom-get", path=MEM_DEVICE, property="size")) // MB

    def balloon(self, target_mb: int) -> None:
        """virtio-balloon: the VM's logical size the balloon should leave."""
        self.execute("balloon", value=target_mb * MB)

    def balloon_actual_mb(self) -> int:
        """virtio-balloon: the VM's logical size now (what the balloon has not taken)."""
        return int(self.execute("query-balloon")["actual"]) // MB

    def quit(self) -> None:
        with contextlib.suppress(QemuError):  # QEMU may close the connection before it answers
            self.execute("quit", timeout=3.0)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a dead connection: nothing left to release
            self._run(self._client.disconnect(), 3.0)
