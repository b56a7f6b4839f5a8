"""A client for qshim's REST API over its unix socket, as curl --unix-socket would talk to it."""
import http.client
import json
import socket


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def call(socket_path, method, path, body=None, timeout=120):
    """Returns (status, parsed JSON body or None)."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def expect(socket_path, method, path, body=None, status=200, timeout=120):
    got, data = call(socket_path, method, path, body, timeout)
    assert got == status, f"{method} {path}: HTTP {got}, expected {status}: {data}"
    return data
