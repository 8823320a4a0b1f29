"""The emulator's WinRM endpoint: WS-Management over HTTP or HTTPS with Basic auth, on loopback
unless told otherwise.

Hardening (`connections`): connections are served by a bounded pool of workers; failed logins
are answered after a delay that doubles per source address. A generated TLS key is deleted as
soon as it is loaded (it never outlives the process, even a killed one); the directory with
the public certificate goes at `stop()` or at interpreter exit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any

from harness.emulator.connections import AuthThrottle, ConnectionPool
from harness.emulator.psrp import PipelineHandler, PSRPEndpoint
from harness.emulator.tls import self_signed
from harness.errors import ConfigError

__all__ = ["EmulatorServer"]

log = logging.getLogger(__name__)

_PATH = "/wsman"
_MAX_BODY = 16 * 1024 * 1024
_BUSY_IDLE_S = 2.0  # how long a connection may stay silent while others wait for a worker
_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


class _HTTPServer(HTTPServer):
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        owner: EmulatorServer,
        *,
        max_connections: int,
        backlog: int,
    ) -> None:
        self.address_family = family
        self.owner = owner
        self.connections: set[socket.socket] = set()
        # Connections waiting for their next request (keep-alive), and since when.
        self.idle: dict[socket.socket, float] = {}
        self.connections_lock = threading.Lock()
        self.pool = ConnectionPool(
            self._serve,
            self._refuse,
            self._evict_idle,
            size=max_connections,
            backlog=backlog,
            name=f"dmh-http-{address[1]}",
        )
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def _refuse(self, request: Any) -> None:
        # Plain HTTP gets a 503 it can read; a TLS client just sees the connection close.
        if self.owner._ssl_context is None:
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nServer: Microsoft-HTTPAPI/2.0\r\n"
                    b"Retry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
        self.shutdown_request(request)

    def _evict_idle(self) -> bool:
        with self.connections_lock:
            if not self.idle:
                return False
            oldest = min(self.idle, key=self.idle.__getitem__)
            del self.idle[oldest]
        with contextlib.suppress(OSError):
            oldest.shutdown(socket.SHUT_RDWR)
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop the connection or refuse our certificate are not server errors.
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HTTPServer

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.server.owner._ssl_context
        if context is not None:
            # The handshake happens here, in the connection's thread, not in the accept loop.
            self.request.settimeout(self.timeout)
            self.request = context.wrap_socket(self.request, server_side=True)
        with self.server.connections_lock:
            self.server.connections.add(self.request)
        super().setup()

    def handle_one_request(self) -> None:
        # Waiting for the next request line: idle, so a saturated pool may close it.
        with self.server.connections_lock:
            self.server.idle[self.request] = time.monotonic()
        if not self._request_coming():
            self.close_connection = True
            return
        super().handle_one_request()

    def _request_coming(self) -> bool:
        """Wait until the client sends (True), or until it has been silent for the
        keep-alive timeout, or for `_BUSY_IDLE_S` while other connections wait for a worker
        (False). Polled, not read with a timeout: a socket file that timed out once cannot
        be read again. (Clients here never pipeline, so nothing waits in `rfile`'s buffer.)"""
        conn = self.connection
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        end = time.monotonic() + self.timeout
        while True:
            if isinstance(conn, ssl.SSLSocket) and conn.pending():
                return True
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            if poller.poll(min(_BUSY_IDLE_S, remaining) * 1000):
                return True  # data, or the peer closed: handle_one_request reads either
            if self.server.pool.queued:
                return False  # others wait for a worker: a silent connection gives way

    def parse_request(self) -> bool:
        with self.server.connections_lock:
            self.server.idle.pop(self.request, None)
        return super().parse_request()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.request)
                self.server.idle.pop(self.request, None)
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()  # the socketserver only closes the unwrapped socket

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(
        self,
        status: int,
        body: bytes,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        lines = [f"{self.protocol_version} {status} {self.responses[status][0]}"]
        lines.append(f"Server: {self.server_version}")
        if body:
            lines.append(f"Content-Type: {_CONTENT_TYPE}")
        lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in extra)
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write per response: with Nagle, a header write then a body write costs ~40 ms.
        self.wfile.write(head + body)
        self.log_request(status, len(body))

    def _user(self) -> str | None:
        """The authenticated user; None after answering 401 (or 503 while throttled)."""
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            self._unauthorized()  # no credentials offered: a challenge, not a failure
            return None
        owner = self.server.owner
        address = self.client_address[0]
        if owner.throttle.busy(address):
            # One failure from here is still waiting out its delay: no parallel guessing.
            self._reply(503, b"", extra=(("Retry-After", "1"),), close=True)
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        user, sep, password = decoded.partition(b":")
        # Compare both parts in constant time, and always both, so timing tells nothing.
        user_ok = hmac.compare_digest(user, owner._username)
        password_ok = hmac.compare_digest(password, owner._password)
        if not (sep and user_ok and password_ok):
            delay = owner.throttle.failed(address)
            log.info("failed login from %s: answered after %.2f s", address, delay)
            owner.throttle.wait(address, delay)
            self._unauthorized()
            return None
        owner.throttle.succeeded(address)
        return user.decode("utf-8", "replace")

    def _unauthorized(self) -> None:
        # The body is left unread, so the connection cannot be reused.
        self._reply(401, b"", extra=(("WWW-Authenticate", 'Basic realm="WSMAN"'),), close=True)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") != _PATH:
            self._reply(404, b"", close=True)
            return
        user = self._user()
        if user is None:
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reply(411, b"", close=True)
            return
        length = int(length_text)
        if length > _MAX_BODY:
            self._reply(413, b"", close=True)
            return
        body = self.rfile.read(length)
        if self.headers.get("Content-Type", "").startswith("multipart/"):
            # pypsrp wraps messages when encryption is not 'never' over plain HTTP.
            log.warning("encrypted WinRM message refused: use HTTPS or encryption='never'")
            self._reply(415, b"", close=True)
            return
        owner = self.server.owner
        endpoint = owner._endpoint
        if endpoint is None:  # a request that raced stop()
            self._reply(503, b"", close=True)
            return
        status, answer = endpoint.handle(
            body, user=user, client_ip=self.client_address[0], address=owner.url
        )
        self._reply(status, answer)

    def _not_allowed(self) -> None:
        self._reply(405, b"", extra=(("Allow", "POST"),), close=True)

    do_GET = do_PUT = do_DELETE = do_HEAD = _not_allowed


class EmulatorServer:
    """A WinRM (WS-Management/PSRP) endpoint that runs every pipeline through `handler`.

    Clients connect with pypsrp: `WSMan(host, port=server.port, path="wsman", auth="basic",
    username=..., password=..., ssl=server.tls, encryption="never" for HTTP,
    cert_validation=server.cert_path for HTTPS)`.
    """

    def __init__(
        self,
        handler: PipelineHandler,
        *,
        password: str,
        username: str = "dmh",
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        certfile: str | None = None,
        keyfile: str | None = None,
        allow_remote: bool = False,
        max_workers: int = 16,
        max_connections: int = 32,
        backlog: int = 64,
        throttle: AuthThrottle | None = None,
    ) -> None:
        if not password:
            raise ConfigError("the emulator needs a non-empty password for Basic auth")
        if not username or ":" in username:
            raise ConfigError(f"emulator username {username!r} must be non-empty without ':'")
        if not _is_loopback(host):
            if not allow_remote:
                raise ConfigError(
                    f"refusing to bind the emulator to {host!r}: it is not a loopback address, "
                    "so other machines could reach it; pass --allow-remote (allow_remote=True) "
                    "to allow that"
                )
            log.warning("emulator will accept connections from other machines on %s", host)
        if (certfile is None) != (keyfile is None):
            raise ConfigError("give both certfile and keyfile, or neither")
        if certfile is not None and not tls:
            raise ConfigError("certfile/keyfile given but tls=False")
        self.host = host
        self.tls = tls
        self.username = username
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")
        self._requested_port = port
        self._certfile = certfile
        self._keyfile = keyfile
        self._cert_dir: str | None = None
        self._cert_cleanup: weakref.finalize[Any, Any] | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._handler = handler
        self._max_workers = max_workers
        self._max_connections = max_connections
        self._backlog = backlog
        self.throttle = throttle or AuthThrottle()
        self._endpoint: PSRPEndpoint | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.cert_path: str | None = None

    def __repr__(self) -> str:
        return f"EmulatorServer({self.url if self.port else 'not started'})"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{_PATH}"

    @property
    def shell_count(self) -> int:
        """Open runspace pools (shells); for tests that check clients clean up."""
        return self._endpoint.shell_count if self._endpoint is not None else 0

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("the emulator server is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            httpd = _HTTPServer(
                (self.host.strip("[]"), self._requested_port),
                family,
                self,
                max_connections=self._max_connections,
                backlog=self._backlog,
            )
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {self.host}:{self._requested_port}: {err.strerror or err}"
            ) from err
        try:
            if self.tls:
                self._ssl_context = self._make_context()
        except BaseException:
            httpd.server_close()
            self._remove_generated_cert()
            raise
        self._endpoint = PSRPEndpoint(
            self._handler, max_workers=self._max_workers, machine=socket.gethostname()
        )
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"dmh-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("emulator listening on %s", self.url)

    def _make_context(self) -> ssl.SSLContext:
        generated = self._certfile is None or self._keyfile is None
        if generated:
            self._cert_dir = tempfile.mkdtemp(prefix="dmh-emulator-tls-")
            # Removed at interpreter exit at the latest, even if stop() is never called.
            self._cert_cleanup = weakref.finalize(
                self, shutil.rmtree, self._cert_dir, ignore_errors=True
            )
            self._certfile, self._keyfile = self_signed(self._cert_dir, self.host)
        assert self._certfile is not None and self._keyfile is not None
        self.cert_path = self._certfile
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self._certfile, self._keyfile)
        finally:
            if generated:
                # Loaded: the private key need not exist on disk any more (not even if this
                # process is killed); clients only need the certificate.
                os.unlink(self._keyfile)
                self._keyfile = None
        return context

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every shell, end connections and join the server's threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        deadline = time.monotonic() + timeout
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close(max(0.0, deadline - time.monotonic()))
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        httpd.pool.close(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
        self._remove_generated_cert()
        log.info("emulator on port %d stopped", self.port)

    def _remove_generated_cert(self) -> None:
        if self._cert_cleanup is not None:
            self._cert_cleanup()  # rmtree, once
            self._cert_cleanup = None
        if self._cert_dir is not None:
            self._cert_dir = None
            self._certfile = self._keyfile = self.cert_path = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
