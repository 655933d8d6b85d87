#!/usr/bin/python3
"""Lab mail client: connect from SRC to DST:PORT and read the banner.
Prints 'connected' or 'blocked'; exit status 0 or 1."""
import socket
import sys

src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.bind((src, 0))
    s.connect((dst, port))
    banner = s.recv(128)
    print("connected", banner.decode(errors="replace").strip())
    sys.exit(0)
except OSError as e:
    print("blocked", f"({e.__class__.__name__}: {e})")
    sys.exit(1)
