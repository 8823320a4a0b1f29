"""Open a report in headless Chromium: screenshot, rendered DOM and the page's console errors.

Speaks the DevTools protocol over `--remote-debugging-pipe`: no port, no extra package.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DEFAULT_CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(HarnessError):
    """Chromium could not be started, died, or did not load the page within the deadline."""


@dataclass(frozen=True)
class PageCheck:
    console_errors: tuple[str, ...]
    dom: str  # the rendered document, as `document.documentElement.outerHTML`
    screenshot: Path | None
    values: tuple[Any, ...] = ()  # results of the `expressions`, in order


def screenshot(
    html_path: Path,
    png_path: Path,
    chromium: str = DEFAULT_CHROMIUM,
    window_size: tuple[int, int] = (1280, 2000),
    timeout_s: float = 60.0,
) -> list[str]:
    """Write a screenshot of the page and return its console errors (empty when clean)."""
    check = check_page(html_path, png_path, chromium, window_size, timeout_s)
    return list(check.console_errors)


def check_page(
    html_path: Path,
    png_path: Path | None = None,
    chromium: str = DEFAULT_CHROMIUM,
    window_size: tuple[int, int] = (1280, 2000),
    timeout_s: float = 60.0,
    full_page: bool = False,
    expressions: Sequence[str] = (),
) -> PageCheck:
    """Load `html_path` in a fresh headless Chromium profile and report what a reader sees;
    `expressions` are evaluated in the loaded page (JSON-serialisable results)."""
    if not Path(chromium).exists():
        raise BrowserError(f"{chromium}: not found; install the Debian package 'chromium'")
    url = html_path.resolve().as_uri()
    width, height = window_size
    with tempfile.TemporaryDirectory(prefix="dmh-chromium-") as profile:
        stderr_path = Path(profile) / "stderr.log"
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # Out of the way of 3 and 4, which the trampoline below overwrites.
        commands_read, replies_write = _high_fd(commands_read), _high_fd(replies_write)
        # Chromium expects the pipe on fds 3 and 4; a tiny Python trampoline maps them
        # (dash cannot name fds above 9, and preexec_fn is unsafe with threads).
        trampoline = [
            sys.executable,
            "-c",
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])",
            str(commands_read),
            str(replies_write),
        ]
        args = [
            chromium,
            *FLAGS,
            f"--user-data-dir={Path(profile) / 'profile'}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [*trampoline, *args],
                pass_fds=(commands_read, replies_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group: renderers go with it
            )
        os.close(commands_read)
        os.close(replies_write)
        pipe = _DevToolsPipe(commands_write, replies_read, time.monotonic() + timeout_s)
        closed = False
        try:
            result = _inspect(pipe, url, png_path, (width, height), full_page, expressions)
            closed = True
            return result
        except BrowserError as exc:
            tail = stderr_path.read_text(errors="replace")[-2000:]
            raise BrowserError(f"{exc}; chromium stderr ends with:\n{tail}") from exc
        finally:
            pipe.close()
            _stop(process, grace_s=10.0 if closed else 0.0)


def _inspect(
    pipe: _DevToolsPipe,
    url: str,
    png_path: Path | None,
    size: tuple[int, int],
    full_page: bool,
    expressions: Sequence[str],
) -> PageCheck:
    width, height = size
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        pipe.call(f"{domain}.enable", session=session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    navigation = pipe.call("Page.navigate", {"url": url}, session=session)
    if navigation.get("errorText"):
        raise BrowserError(f"{url}: navigation failed: {navigation['errorText']}")
    pipe.wait_event("Page.loadEventFired", session)
    shot: Path | None = None
    if png_path is not None:
        data = pipe.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": full_page},
            session=session,
        )["data"]
        png_path.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(base64.b64decode(data))
        shot = png_path
    dom, *values = (
        _evaluate(pipe, session, e) for e in ("document.documentElement.outerHTML", *expressions)
    )
    errors = tuple(e for e in (_console_error(m) for m in pipe.events) if e is not None)
    # The browser may close the pipe before it answers; _stop makes sure it is gone.
    with contextlib.suppress(BrowserError):
        pipe.call("Browser.close")
    return PageCheck(console_errors=errors, dom=str(dom), screenshot=shot, values=tuple(values))


def _evaluate(pipe: _DevToolsPipe, session: str, expression: str) -> Any:
    reply = pipe.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    if "exceptionDetails" in reply:
        raise BrowserError(f"{expression}: {reply['exceptionDetails'].get('text', 'threw')}")
    return reply["result"].get("value")


class _DevToolsPipe:
    """NUL-delimited JSON messages over the two pipes; collects events while it waits."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._deadline = deadline
        self._buffer = b""
        self._next_id = 0
        self.events: list[Mapping[str, Any]] = []

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, session: str | None = None
    ) -> Mapping[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode("utf-8") + b"\0"
        try:
            while data:
                data = data[os.write(self._write_fd, data) :]
        except OSError as exc:
            raise BrowserError(f"{method}: cannot write to chromium: {exc}") from exc
        while True:
            reply = self._receive(method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message', reply)}")
                result: Mapping[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str) -> Mapping[str, Any]:
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            message = self._receive(method)
            if "method" in message:
                self.events.append(message)
                if message["method"] == method and message.get("sessionId") == session:
                    return message

    def close(self) -> None:
        for fd in (self._write_fd, self._read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _receive(self, waiting_for: str) -> Mapping[str, Any]:
        while b"\0" not in self._buffer:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{waiting_for}: no answer from chromium in time")
            ready, _, _ = select.select([self._read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise BrowserError(f"{waiting_for}: chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: Mapping[str, Any] = json.loads(raw)
        return message


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def _console_error(event: Mapping[str, Any]) -> str | None:
    method = event.get("method")
    params: Mapping[str, Any] = event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        text = " ".join(_remote_text(a) for a in params.get("args", ()))
        return f"console.{params['type']}: {text}{_where(params.get('stackTrace'))}"
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        exception = details.get("exception", {})
        text = exception.get("description") or details.get("text", "exception")
        return f"uncaught: {text} ({details.get('url', '')}:{details.get('lineNumber', '?')})"
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        if entry.get("level") == "error":
            source = entry.get("url") or ""
            return f"{entry.get('source', 'log')}: {entry.get('text', '')} {source}".strip()
    return None


def _remote_text(value: Mapping[str, Any]) -> str:
    if "value" in value:
        return str(value["value"])
    return str(value.get("description", value.get("type", "")))


def _where(stack: Mapping[str, Any] | None) -> str:
    frames: Sequence[Mapping[str, Any]] = (stack or {}).get("callFrames", ())
    if not frames:
        return ""
    top = frames[0]
    return f" ({top.get('url', '')}:{top.get('lineNumber', 0) + 1})"


def _stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait for the browser to exit after Browser.close; past the grace, kill its group."""
    try:
        process.wait(timeout=grace_s)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10.0)
