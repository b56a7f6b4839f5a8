#!/usr/bin/env python3
"""The interactive serial console: `qshim run --console` on a terminal (a pty here), and
`qshim ctl console` through the API socket. The test guest echoes each line typed on its console."""
import os
import signal
import socket
import subprocess
import sys
import termios
import threading
import time

from qshim_cli import guest_boot, qshim_bin, write_spec
from qshim_guest import guest_dir
from qshim_run import QshimRun


class PtyReader:
    """Collects what a pty's master side receives, and waits for text in it with a deadline."""

    def __init__(self, fd):
        self.fd, self.data, self.cond = fd, b"", threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.cond.notify_all()

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while text not in self.data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{text!r} not on the terminal within {timeout}s; "
                                       f"last:\n{self.data[-2000:].decode(errors='replace')}")
                self.cond.wait(left)


def spec_for(tmp, name):
    # No serial.socket: that would hand the console to whoever connects there.
    return write_spec(tmp, {
        "name": name,
        "machine": {"accel": "tcg"},
        "memory": {"size": "256Mi"},
        "boot": guest_boot(guest_dir(), "console=ttyS0 panic=-1 qshim.echo"),
        "serial": {"log": str(tmp / "console.log")},
        "lifecycle": {"gracePeriodSeconds": 10},
    })


def run_console_on_a_terminal():
    """Keys typed on qshim's terminal reach the guest; Ctrl-] stops the VM; the terminal is restored."""
    with QshimRun() as run:
        spec = spec_for(run.tmp, "console")
        master, slave = os.openpty()
        before = termios.tcgetattr(slave)
        events = run.tmp / "events.jsonl"
        with open(run.tmp / "stderr.log", "wb") as err:
            proc = subprocess.Popen([qshim_bin(), "run", "--console", "--events", str(events), str(spec)],
                                    stdin=slave, stdout=slave, stderr=err, cwd=run.tmp,
                                    start_new_session=True)
        try:
            term = PtyReader(master)
            term.wait_for(b"QSHIM-GUEST: echoing", timeout=90)
            raw = termios.tcgetattr(slave)
            assert not raw[3] & termios.ECHO and not raw[3] & termios.ICANON, "the terminal is not raw"
            os.write(master, b"typed-on-the-terminal\r")
            term.wait_for(b"QSHIM-GUEST: echo typed-on-the-terminal", timeout=30)
            print("ok a line typed on qshim's terminal reached the guest and came back")
            term.wait_for(b"QSHIM-GUEST: ready", timeout=60)  # acpid runs: the stop is graceful
            os.write(master, b"\x1d")
            code = proc.wait(60)
            assert code == 0, f"qshim exit {code}: {(run.tmp / 'stderr.log').read_text()}"
            text = events.read_text()
            assert '"shutdown-requested"' in text and '"reason":"stopped"' in text.replace(" ", ""), text
            assert termios.tcgetattr(slave) == before, "the terminal was not restored"
            print("ok Ctrl-] stopped the VM gracefully and the terminal is as it was")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            os.close(master)
            os.close(slave)


def plain_get_is_told_to_upgrade(sock):
    """GET /v1/vm/console without the upgrade: 426, saying how to ask."""
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(sock))
        c.sendall(b"GET /v1/vm/console HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = c.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 426"), answer


def read_until(stream, text, timeout):
    """Reads a pipe (in a thread) until text appears; returns all read."""
    got, done = [b""], threading.Event()

    def reader():
        while text not in got[0]:
            chunk = stream.read1(4096)
            if not chunk:
                break
            got[0] += chunk
        done.set()
    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(timeout) or text not in got[0]:
        raise TimeoutError(f"{text!r} not read within {timeout}s; got {got[0][-2000:]!r}")
    return got[0]


def ctl_console_through_the_api():
    """ctl console attaches through the API: input reaches the guest, one client at a time, Ctrl-]
    detaches and leaves the VM running; a plain GET is told to upgrade."""
    clients = []

    def client(sock):
        """`qshim ctl console`, killed at the end of the test whatever happens."""
        c = subprocess.Popen([qshim_bin(), "ctl", "--api-socket", str(sock), "console"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        clients.append(c)
        return c

    try:
        ctl_console_steps(client)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()


def ctl_console_steps(client):
    with QshimRun() as run:
        sock = run.tmp / "api.sock"
        run.run(spec_for(run.tmp, "ctl-console"), "--api-socket", sock)
        run.console.wait_for(r"QSHIM-GUEST: ready", timeout=90)
        first = client(sock)
        try:
            first.stdin.write(b"through-the-api\n")
            first.stdin.flush()
            read_until(first.stdout, b"QSHIM-GUEST: echo through-the-api", timeout=30)
            print("ok ctl console: a line sent through the API reached the guest and came back")
            second = subprocess.run([qshim_bin(), "ctl", "--api-socket", str(sock), "console"],
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
            assert second.returncode == 1, second
            assert "another client is attached" in second.stderr, second.stderr
            print("ok a second console client is refused while one is attached")
            first.stdin.write(b"\x1d")
            first.stdin.flush()
            assert first.wait(30) == 0, first.stderr.read()
            assert run.running(), "detaching stopped the VM"
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        # The log still has everything, typed lines included.
        run.console.wait_for(r"QSHIM-GUEST: echo through-the-api", timeout=5)
        # Without the upgrade the API says how to ask.
        plain_get_is_told_to_upgrade(sock)
        # Once the first detached, another client may attach.
        again = client(sock)
        again.stdin.write(b"second-client\n")
        again.stdin.flush()
        read_until(again.stdout, b"QSHIM-GUEST: echo second-client", timeout=30)
        again.stdin.write(b"\x1d")
        again.stdin.flush()
        assert again.wait(30) == 0, again.stderr.read()
        print("ok after a detach another client attaches")
        # Again, and this round trip orders us after the server has seen the last client go.
        plain_get_is_told_to_upgrade(sock)
        # Piped input that runs out: the client half-closes, and the guest's answer still comes.
        piped = client(sock)
        piped.stdin.write(b"piped-then-closed\n")
        piped.stdin.close()
        read_until(piped.stdout, b"QSHIM-GUEST: echo piped-then-closed", timeout=30)
        print("ok input that ends (a pipe) still gets the guest's answer")
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0
        # The VM ended: the attached client is told and exits.
        assert piped.wait(30) == 0, piped.stderr.read()
        assert b"the console ended" in piped.stderr.read()
        print("ok the VM's end ends the attached client")


def main():
    run_console_on_a_terminal()
    ctl_console_through_the_api()
    return 0


if __name__ == "__main__":
    sys.exit(main())
