"""Reference app (fixed port): the good app, serving on a fixed TCP port (8080 unless
`--port N`), as a service does. Two VMs each have their own network, so two copies in two
guests (pytest -n 2) both bind it; a failed bind exits with the error on stderr."""

from __future__ import annotations

import argparse
import socket
import threading

from _memview import run
from cache_good import decide


def serve(port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in use is an error
    server.listen()

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"ok\n")

    threading.Thread(target=accept, daemon=True).start()
    print(f"listening on 127.0.0.1:{port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    serve(parser.parse_args().port)
    run(decide)
