"""A memcached client's load, as a cache's users make it: set and get values of 4 KB on a key
space of 80 MB, more than its 64 MB limit, so memcached evicts as it serves. Exits 1 when the
server does not answer or answers out of protocol. Standard library only."""

import random
import socket
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 11211
KEYS, VALUE, OPERATIONS = 20000, b"x" * 4096, 4000


def main() -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
        replies = sock.makefile("rb")
        for _ in range(OPERATIONS):
            key = f"key:{random.randrange(KEYS)}".encode()
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(VALUE), VALUE))
            if replies.readline() != b"STORED\r\n":
                sys.exit(f"set {key.decode()}: not stored")
            sock.sendall(b"get %s\r\n" % key)
            line = replies.readline()
            if line.startswith(b"VALUE "):
                replies.read(int(line.split()[3]) + 2)
                line = replies.readline()
            if line != b"END\r\n":
                sys.exit(f"get {key.decode()}: {line!r}")


if __name__ == "__main__":
    main()
