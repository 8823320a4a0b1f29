"""Bind a TCP port on loopback and say whether it worked."""

import socket
import sys
import time

with socket.socket() as sock:
    try:
        sock.bind(("127.0.0.1", int(sys.argv[1])))
        sock.listen()
    except OSError as exc:
        print(f"refused {exc.errno}", flush=True)
        sys.exit(1)
    print("bound", flush=True)
    time.sleep(300)
