# Helpers for integration tests that boot the qshim test guest (tests/guest) and read its console reports.
"""Test library for the qshim test guest (python3 stdlib only).

The guest prints ``QSHIM-GUEST: ...`` lines on its serial console (see tests/guest/README.md).
``Console`` collects that stream in a background thread and parses the reports; tests wait on it
with deadlines. ``QemuProcess`` runs a process in a throw-away directory and always cleans up.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "QSHIM-GUEST: "


class GuestError(RuntimeError):
    """The test guest or its console did not behave as the test needs."""


def guest_dir():
    """The built test guest named by $QSHIM_TEST_GUEST; a missing guest fails the test, never skips it."""
    d = os.environ.get("QSHIM_TEST_GUEST")
    if not d:
        raise GuestError("QSHIM_TEST_GUEST is not set: build the guest with "
                         "`tests/guest/build DIR` and export QSHIM_TEST_GUEST=DIR")
    path = Path(d)
    for name in ("vmlinuz", "initramfs.cpio.gz"):
        if not (path / name).is_file():
            raise GuestError(f"QSHIM_TEST_GUEST={d} has no {name}: run `tests/guest/build {d}`")
    return path


def base_qemu_argv(guest_dir, extra_cmdline=""):
    """QEMU argv booting the guest with its console on stdout; tests append devices.

    -no-reboot plus panic=-1 turn a guest panic into a QEMU exit, so a broken guest fails fast.
    """
    guest_dir = Path(guest_dir)
    cmdline = " ".join(x for x in ("console=ttyS0 panic=-1", extra_cmdline) if x)
    return [
        "qemu-system-x86_64", "-machine", "pc-q35-7.2", "-accel", "tcg", "-m", "256",
        "-nodefaults", "-nographic", "-no-user-config", "-no-reboot",
        "-kernel", str(guest_dir / "vmlinuz"), "-initrd", str(guest_dir / "initramfs.cpio.gz"),
        "-append", cmdline, "-serial", "stdio",
    ]


@dataclass
class Report:
    """One complete device report of the guest."""
    seq: int
    pci: dict = field(default_factory=dict)    # "0000:01:00.0" -> (vendor, device, class)
    disks: dict = field(default_factory=dict)  # "vda" -> {"bus", "serial", "pci", "hctl"?}
    nics: dict = field(default_factory=dict)   # "eth0" -> {"mac", "pci"}
    numa: dict = field(default_factory=dict)   # "node0" -> {"cpus", "memory_kb"}

    def disk_by_serial(self, serial):
        return next((dict(d, name=n) for n, d in self.disks.items() if d.get("serial") == serial), None)

    def nic_by_mac(self, mac):
        mac = mac.lower()
        return next((dict(d, name=n) for n, d in self.nics.items() if d.get("mac") == mac), None)


_BEGIN = re.compile(r"report begin seq=(\d+)$")
_END = re.compile(r"report end seq=(\d+)$")


def _fields(words):
    return dict(w.split("=", 1) for w in words if "=" in w)


class _ReportParser:
    """Feeds console lines; keeps the reports whose begin and end lines both arrived."""

    def __init__(self):
        self.reports = []
        self._cur = None

    def line(self, line):
        at = line.find(PREFIX)
        if at < 0:
            return
        body = line[at + len(PREFIX):].strip()
        if m := _BEGIN.match(body):
            self._cur = Report(int(m.group(1)))
            return
        if self._cur is None:
            return
        if m := _END.match(body):
            if int(m.group(1)) == self._cur.seq:
                self.reports.append(self._cur)
            self._cur = None
            return
        kind, _, rest = body.partition(" ")
        name, _, rest = rest.partition(" ")
        f = _fields(rest.split())
        if kind == "pci":
            self._cur.pci[name] = (f.get("vendor"), f.get("device"), f.get("class"))
        elif kind == "disk":
            self._cur.disks[name] = f
        elif kind == "nic":
            self._cur.nics[name] = f
        elif kind == "numa":
            self._cur.numa[name] = f


class Console:
    """Collects a guest serial console in a background thread.

    source: a path of a file that QEMU appends to (tailed; ``until`` says when its writer is gone),
    an int fd, or a socket. The waits use a condition variable woken by every chunk read.
    """

    def __init__(self, source, until=None, poll_interval=0.02):
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._partial = b""
        self._parser = _ReportParser()
        self._eof = False
        self._stop = False
        self._source = source
        self._until = until
        self._poll = poll_interval
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def _feed(self, data):
        with self._cond:
            if data:
                self._buf += data
                *lines, self._partial = (self._partial + data).split(b"\n")
                for line in lines:
                    self._parser.line(line.decode("utf-8", "replace").rstrip("\r"))
            else:
                self._eof = True
            self._cond.notify_all()

    def _run(self):
        try:
            if isinstance(self._source, int):
                while data := os.read(self._source, 65536):
                    self._feed(data)
            elif isinstance(self._source, socket.socket):
                while data := self._source.recv(65536):
                    self._feed(data)
            else:
                self._tail(Path(self._source))
        except OSError:
            pass
        self._feed(b"")

    def _tail(self, path):
        # A regular file has no "more data" notification; a short sleep here keeps the tests themselves event-driven.
        f = None
        while not self._stop:
            if f is None:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    pass
            data = f.read(65536) if f else b""
            if data:
                self._feed(data)
                continue
            if self._until is not None and self._until():
                if f is None or not (data := f.read()):
                    break
                self._feed(data)
                continue
            time.sleep(self._poll)
        if f:
            f.close()

    def close(self):
        self._stop = True

    @property
    def eof(self):
        with self._cond:
            return self._eof

    def _decoded(self, since=0):
        return self._buf[since:].decode("utf-8", "replace").replace("\r\n", "\n")

    def text(self):
        """Everything read so far, with the tty's CRLF turned into LF."""
        with self._cond:
            return self._decoded()

    def mark(self):
        """A position for wait_for(since=...), to wait only for output that comes after now."""
        with self._cond:
            return len(self._buf)

    def reports(self):
        with self._cond:
            return list(self._parser.reports)

    def _wait(self, check, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check()
                if result:
                    return result
                if self._eof:
                    raise GuestError(f"console ended (its writer is gone) while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self._decoded().splitlines()[-15:])
                    raise TimeoutError(f"no {what} within {timeout}s; console tail:\n{tail}")
                self._cond.wait(left)

    def wait_for(self, what, timeout, since=0):
        """Wait until a regex (str or compiled) matches the console text from position since (see
        mark()), or a callable given that text returns something truthy; returns the match or value."""
        if callable(what):
            return self._wait(lambda: what(self._decoded(since)), timeout, repr(what))
        rx = re.compile(what) if isinstance(what, str) else what
        return self._wait(lambda: rx.search(self._decoded(since)), timeout, repr(rx.pattern))

    def wait_ready(self, timeout=60):
        return self.wait_for(re.compile(r"^" + re.escape(PREFIX) + r"ready$", re.M), timeout)

    def wait_report(self, predicate=lambda r: True, timeout=60, min_seq=0):
        """The newest complete report with seq >= min_seq for which predicate(report) is true."""
        def check():
            return next((r for r in reversed(self._parser.reports)
                         if r.seq >= min_seq and predicate(r)), None)
        return self._wait(check, timeout, "matching guest report")


class Qmp:
    """Minimal synchronous QMP client for a unix socket; events are kept in self.events."""

    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # QEMU creates the socket during startup; nothing to wait on.
        self._file = self._sock.makefile("rb")
        self.events = []
        self._taken = 0  # events[:_taken] were returned by next_event
        self._id = 0
        self.greeting = self._recv()
        self.execute("qmp_capabilities")

    def _recv(self):
        line = self._file.readline()
        if not line:
            raise GuestError("QMP connection closed")
        return json.loads(line)

    def execute(self, command, arguments=None):
        self._id += 1
        msg = {"execute": command, "id": self._id}
        if arguments is not None:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._recv()
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == self._id:
                if "error" in reply:
                    raise GuestError(f"QMP {command} failed: {reply['error']}")
                return reply.get("return")

    def _find_event(self, name, start, timeout):
        """The index of the first event called name among self.events[start:], reading more
        from QEMU until timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(start, len(self.events)):
                if self.events[i]["event"] == name:
                    return i
            start = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no QMP event {name} within {timeout}s")
            self._sock.settimeout(left)
            try:
                self.events.append(self._recv())
            except socket.timeout:
                raise TimeoutError(f"no QMP event {name} within {timeout}s") from None

    def wait_event(self, name, timeout=10):
        """The first event called name (already received or arriving within timeout)."""
        return self.events[self._find_event(name, 0, timeout)]

    def next_event(self, name, timeout=10):
        """The next event called name that next_event has not returned yet (already received or
        arriving within timeout): for following a sequence of events of one name."""
        i = self._find_event(name, self._taken, timeout)
        self._taken = i + 1
        return self.events[i]

    def close(self):
        self._file.close()
        self._sock.close()


# qshim started as root runs QEMU as 107:107 (security.runAs's default; docs/security.md), so
# whatever a test makes for QEMU must belong to that uid, as a pod's volumes belong to QEMU's.
QEMU_UID = QEMU_GID = 107


def give_to_qemu(path):
    """Hand a file or folder the test made to QEMU's uid (when the tests run as root)."""
    if os.geteuid() == 0:
        os.chown(path, QEMU_UID, QEMU_GID)
    return path


def give_tree_to_qemu(root):
    """give_to_qemu for a folder and everything in it."""
    give_to_qemu(root)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            give_to_qemu(os.path.join(parent, name))


class QemuProcess:
    """Runs argv (QEMU, or qshim) in a fresh temp dir; on exit kills its process group and removes the dir.

    Use ``QemuProcess(argv)`` to start on entry, or ``QemuProcess()`` and ``start(argv)`` when argv
    needs paths inside ``tmp`` (``path(name)``). ``console`` reads stdout, where base_qemu_argv puts
    the serial console; pass console_file to read another file instead. Set QSHIM_TEST_KEEP=1 to keep
    the temp dir for debugging.
    """

    def __init__(self, argv=None, console_file=None, terminate_grace=2.0):
        self._argv = argv
        self._console_file = console_file
        self._grace = terminate_grace
        self.tmp = None
        self.proc = None
        self.console = None

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="qshim-test-"))
        give_to_qemu(self.tmp)  # QEMU creates its sockets and logs here
        try:
            if self._argv is not None:
                self.start(self._argv, self._console_file)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def path(self, name):
        return str(self.tmp / name)

    def start(self, argv, console_file=None):
        self.argv = [str(a) for a in argv]
        give_tree_to_qemu(self.tmp)
        with open(self.tmp / "stdout.log", "wb") as out, open(self.tmp / "stderr.log", "wb") as err:
            # Own session: killing the group also ends children (qshim's QEMU, helpers).
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.tmp, start_new_session=True)
        src = self.tmp / (console_file or "stdout.log")
        self.console = Console(src, until=lambda: self.proc.poll() is not None)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout):
        """The exit code; TimeoutError if the process is still running after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"process {self.proc.pid} still running after {timeout}s") from None

    def stderr_text(self):
        try:
            return (self.tmp / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def dump(self, out=sys.stderr):
        """Print what helps to debug a failure: argv, console and the end of stderr."""
        if self.proc is None:
            return
        print(f"--- argv: {' '.join(getattr(self, 'argv', []))}", file=out)
        if self.console is not None:
            text = self.console.text()
            print(f"--- console ({len(text)} chars, last 20000):\n{text[-20000:]}".rstrip("\n"), file=out)
        err = self.stderr_text().splitlines()[-40:]
        print("--- stderr tail:\n" + "\n".join(err), file=out)
        print(f"--- exit code: {self.proc.poll()}", file=out)

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(self._grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
                self.dump()
        finally:
            self.kill()
            if self.console is not None:
                self.console.close()
            if self.tmp is not None:
                if os.environ.get("QSHIM_TEST_KEEP") == "1":
                    print(f"--- kept {self.tmp}", file=sys.stderr)
                else:
                    shutil.rmtree(self.tmp, ignore_errors=True)
        return False
