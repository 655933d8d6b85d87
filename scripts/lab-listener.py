#!/usr/bin/python3
"""Lab 'internet' mail servers: answers an SMTP banner on ports 25, 587
and 465, IPv4 and IPv6, on every address of its network namespace."""
import selectors
import socket
import sys

PORTS = [int(p) for p in sys.argv[1:]] or [25, 587, 465]
sel = selectors.DefaultSelector()
for port in PORTS:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(512)
    sel.register(s, selectors.EVENT_READ, port)
print("listening on", PORTS, flush=True)
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
            conn.sendall(b"220 lab-mx port %d ESMTP\r\n" % key.data)
            conn.close()
        except OSError:
            pass
