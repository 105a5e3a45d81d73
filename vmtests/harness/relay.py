#!/usr/bin/python3
"""stdin/stdout <-> TCP relay for QEMU ``guestfwd=tcp:169.254.169.254:80-cmd:python3 relay.py 127.0.0.1 PORT``.

slirp starts one relay per guest connection with the connection on fds 0/1. The ``cmd:`` form is used because the
chardev form (``-tcp:127.0.0.1:PORT``) serves only the first connection (vm-notes §5). The relay refuses any
address that is not loopback, so a guest can only ever reach the test's own metadata server.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import sys

IDLE_TIMEOUT = 30.0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: relay.py 127.0.0.1 PORT\n")
        return 2
    host, port = argv[1], int(argv[2])
    if not ipaddress.ip_address(host).is_loopback:
        sys.stderr.write(f"relay.py: refusing non-loopback address {host}\n")
        return 2
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    peer = {0: sock.fileno(), sock.fileno(): 1}
    open_fds = {0, sock.fileno()}
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], IDLE_TIMEOUT)
        if not ready:
            return 0  # idle guest connection: let slirp close it
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                if fd == 0:
                    sock.shutdown(socket.SHUT_WR)
                else:
                    os.close(1)
                continue
            if peer[fd] == 1:
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
            else:
                sock.sendall(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
