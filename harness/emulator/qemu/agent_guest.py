"""The command agent that runs INSIDE a QEMU guest (copied into the initramfs, started by its
init with the guest's own python3): JSON lines over a virtio-serial port, one request per
line, each answered on its own thread so requests run concurrently.

Requests carry an "id" and an "op"; answers echo the id. Standard library only: this file
runs under whatever python3 the shared /usr holds, not in the harness's environment.
Byte strings travel as UTF-8 text with surrogate escapes, so output survives exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

_ENC = "utf-8"
_ERR = "surrogateescape"
_OOM = re.compile(r"Killed process (\d+) \(([^)]*)\)")


class Agent:
    def __init__(self, port: str) -> None:
        self.port = port
        self.fd = os.open(port, os.O_RDWR)
        self.write_lock = threading.Lock()
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.events: list[dict[str, Any]] = []
        self.inputs: dict[Any, queue.Queue[bytes | None]] = {}
        self.lock = threading.Lock()

    # -- transport --------------------------------------------------------------------
    def serve(self) -> None:
        threading.Thread(target=self.watch_kernel_log, daemon=True).start()
        buffer = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                # The host end is not connected: read() returns 0 at once; wait and retry.
                time.sleep(0.05)
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError:
                    request = None
                if isinstance(request, dict) and request.get("op") == "input":
                    self.input(request)  # in order, here: a session's stdin is one stream
                else:
                    threading.Thread(target=self.handle, args=(line,), daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self.write_lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                view = view[written:]

    def handle(self, line: bytes) -> None:
        request_id: Any = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            op = getattr(self, "op_" + str(request.get("op")), None)
            if op is None:
                raise ValueError(f"unknown op {request.get('op')!r}")
            answer = op(request)
        except Exception as exc:  # every failure goes back to the host, never kills the agent
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer["id"] = request_id
        self.send(answer)

    # -- operations -------------------------------------------------------------------
    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        with open("/proc/uptime") as uptime:
            return {"pong": True, "uptime": float(uptime.read().split()[0])}

    def op_exec(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run to completion: argv, stdin, timeout → rc, stdout, stderr."""
        argv = [str(a) for a in request["argv"]]
        stdin = str(request.get("stdin") or "").encode(_ENC, _ERR)
        timeout = request.get("timeout")
        try:
            proc = _piped(argv, request)
        except OSError as exc:
            return {"rc": 127, "stdout": "", "stderr": f"{argv[0]}: {exc.strerror}\n"}
        timed_out = False
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        rc = proc.returncode
        return {
            "rc": 124 if timed_out else (128 - rc if rc < 0 else rc),
            "timed_out": timed_out,
            "stdout": out.decode(_ENC, _ERR),
            "stderr": err.decode(_ENC, _ERR),
        }

    def op_open(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a program with pipes (an SSH session's shell). Its output comes back as
        {"stream": key, "fd": 1|2, "data": ...} lines in order, then {"stream": key, "exit":
        rc}; its input arrives as "input" lines, in order."""
        key = request["stream"]
        proc = _piped([str(a) for a in request["argv"]], request)
        inputs: queue.Queue[bytes | None] = queue.Queue()
        with self.lock:
            self.children[proc.pid] = proc
            self.inputs[key] = inputs
        pumps = [
            threading.Thread(target=self.pump, args=(key, fd, pipe), daemon=True)
            for fd, pipe in ((1, proc.stdout), (2, proc.stderr))
        ]
        for thread in pumps:
            thread.start()
        threading.Thread(target=_feed, args=(proc, inputs), daemon=True).start()
        threading.Thread(target=self.reap, args=(key, proc, pumps), daemon=True).start()
        return {"pid": proc.pid}

    def input(self, message: dict[str, Any]) -> None:
        with self.lock:
            inputs = self.inputs.get(message.get("stream"))
        if inputs is not None:
            eof = bool(message.get("eof"))
            inputs.put(None if eof else str(message.get("data") or "").encode(_ENC, _ERR))

    def pump(self, key: Any, fd: int, pipe: Any) -> None:
        while data := os.read(pipe.fileno(), 65536):
            self.send({"stream": key, "fd": fd, "data": data.decode(_ENC, _ERR)})

    def reap(self, key: Any, proc: subprocess.Popen[bytes], pumps: list[threading.Thread]) -> None:
        for thread in pumps:
            thread.join()
        rc = proc.wait()
        with self.lock:
            inputs = self.inputs.pop(key, None)
        if inputs is not None:
            inputs.put(None)
        self.send({"stream": key, "exit": 128 - rc if rc < 0 else rc})

    def op_spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start in the background, output to files (in the shared scratch directory)."""
        argv = [str(a) for a in request["argv"]]
        out_path, err_path = str(request["stdout"]), str(request["stderr"])
        cwd = request.get("cwd") or None
        program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
        if program is None or not os.path.isfile(os.path.join(cwd or "", program)):
            return {"missing": argv[0]}
        with open(out_path, "wb") as out:
            err = out if err_path == out_path else open(err_path, "wb")  # noqa: SIM115
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=cwd,
                    env=_env(request.get("env")),
                    start_new_session=True,
                    preexec_fn=_child_setup,
                )
            finally:
                if err is not out:
                    err.close()
        with self.lock:
            self.children[proc.pid] = proc
        return {"pid": proc.pid}

    def op_poll(self, request: dict[str, Any]) -> dict[str, Any]:
        codes: dict[str, int | None] = {}
        for pid in request["pids"]:
            with self.lock:
                proc = self.children.get(int(pid))
            codes[str(pid)] = None if proc is None else proc.poll()
        return {"codes": codes}

    def op_signal(self, request: dict[str, Any]) -> dict[str, Any]:
        pid, sig = int(request["pid"]), int(request["sig"])
        _kill_group(pid, sig)
        return {"ok": True}

    def op_wait(self, request: dict[str, Any]) -> dict[str, Any]:
        """Wait until a spawned process and everything in its session are gone."""
        pid = int(request["pid"])
        deadline = time.monotonic() + float(request.get("timeout") or 5)
        with self.lock:
            proc = self.children.get(pid)
        while time.monotonic() < deadline:
            alive = proc is not None and proc.poll() is None
            if not alive and not _session(pid):
                return {"gone": True, "rc": None if proc is None else proc.returncode}
            time.sleep(0.02)
        return {"gone": False, "rc": None if proc is None else proc.poll()}

    def op_stats(self, request: dict[str, Any]) -> dict[str, Any]:
        """Resident and committed (private writable mappings) bytes of a session."""
        pid = int(request["pid"])
        rss = private = count = 0
        for member in _session(pid):
            try:
                with open(f"/proc/{member}/statm") as statm:
                    rss += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                private += _committed(member)
                count += 1
            except (OSError, ValueError):
                continue
        with self.lock:
            proc = self.children.get(pid)
        rc = None if proc is None else proc.poll()
        return {"rss": rss, "private": private, "count": count, "rc": rc, "running": rc is None}

    def op_read(self, request: dict[str, Any]) -> dict[str, Any]:
        with open(str(request["path"]), "rb") as stream:
            stream.seek(int(request.get("offset") or 0))
            return {"data": stream.read().decode(_ENC, _ERR)}

    def op_memory(self, request: dict[str, Any]) -> dict[str, Any]:
        """/proc/meminfo in kB, and the OOM kills seen from index `since` on."""
        fields: dict[str, int] = {}
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    fields[name] = int(parts[0])
        since = int(request.get("since") or 0)
        with self.lock:
            events = self.events[since:]
        return {"meminfo": fields, "events": events, "next": since + len(events)}

    # -- the kernel's OOM reports -----------------------------------------------------
    def watch_kernel_log(self) -> None:
        try:
            kmsg = open("/dev/kmsg", "rb")  # noqa: SIM115
        except OSError:
            return
        with kmsg:
            while True:
                try:
                    record = kmsg.readline().decode(_ENC, "replace")
                except OSError:  # EPIPE: records were overwritten; go on with the next
                    continue
                if not record:
                    return
                found = _OOM.search(record)
                if found:
                    pid, name = int(found.group(1)), found.group(2)
                    with self.lock:
                        owner = pid if pid in self.children else _owner(pid, self.children)
                        self.events.append(
                            {"pid": pid, "name": name, "owner": owner, "at": time.time()}
                        )


def _oom_score_adj(value: int) -> None:
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adj:
        adj.write(str(value))


def _child_setup() -> None:
    """Programs the agent starts are the OOM killer's fair game again (the agent is not)."""
    _oom_score_adj(0)


def _piped(argv: list[str], request: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start a program with all three pipes, in its own session, as the request says."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=request.get("cwd") or None,
        env=_env(request.get("env")),
        start_new_session=True,
        preexec_fn=_child_setup,
    )


def _feed(proc: subprocess.Popen[bytes], inputs: queue.Queue[bytes | None]) -> None:
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    try:
        while (data := inputs.get()) is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:  # the program closed its stdin or ended
        pass
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _env(extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    if isinstance(extra, dict):
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)
    for member in [pid, *_session(pid)]:
        with contextlib.suppress(OSError):
            os.kill(member, sig)


def _session(sid: int) -> list[int]:
    """Every live process of session `sid` (a spawned process leads its own session)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _owner(pid: int, children: dict[int, Any]) -> int:
    """The spawned process a killed one belonged to: its session leader, read while the
    victim is still in the process table (the kernel logs the kill before it is reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            sid = int(stat.read().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return pid
    return sid if sid in children else pid


def _committed(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/maps", "rb") as maps:
        for line in maps:
            perms = line.split(b" ", 2)[1]
            if perms[1:2] == b"w" and perms[3:4] == b"p":
                start, _, end = line.split(b" ", 1)[0].partition(b"-")
                total += int(end, 16) - int(start, 16)
    return total


if __name__ == "__main__":
    # Like a guest agent service (OOMScoreAdjust=-1000): the kernel's OOM killer takes the
    # apps, never the channel that reports what it did (init powers off when the agent ends).
    _oom_score_adj(-1000)
    Agent(sys.argv[1]).serve()
