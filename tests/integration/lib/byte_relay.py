#!/usr/bin/env python3
"""A node-level migration relay as a test stands it up: listens on one unix socket, connects each
client to another, and copies bytes both ways until either side closes. It knows nothing of qshim
or QEMU, like KubeVirt's migration proxy.

Usage: byte_relay.py LISTEN_PATH TARGET_PATH  (prints "ready" once listening)"""
import os
import selectors
import socket
import sys


def relay(a, b):
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    while True:
        for key, _ in sel.select():
            data = key.fileobj.recv(1 << 16)
            if not data:
                return
            key.data.sendall(data)


def main():
    listen_path, target_path = sys.argv[1], sys.argv[2]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen_path)
    server.listen(1)
    print("ready", flush=True)
    try:
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(target_path)
        relay(client, upstream)
    finally:
        os.unlink(listen_path)


if __name__ == "__main__":
    main()
