#!/usr/bin/env python3
"""qshim run under faults: a frozen QEMU, a full disk for events, stdout shared with the caller,
and a tap handed over as an fd (in a network namespace the test makes)."""
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from qshim_api import call, expect
from qshim_cli import qshim, qshim_bin, write_spec
from qshim_guest import Console
from qshim_run import QshimRun, guest_spec, process_gone

LIB = Path(__file__).resolve().parent / "lib"


def qemu_frozen():
    """QEMU stopped with SIGSTOP: a change times out with a clear 504; SIGTERM still ends the VM
    within the grace period plus the quit and kill steps, as a forced stop (exit 5)."""
    with QshimRun() as run:
        api = run.tmp / "api.sock"
        run.run(guest_spec(run.tmp, grace=3), "--api-socket", str(api), "--qmp-timeout", "2")
        run.console.wait_ready(timeout=90)
        qemu = run.qemu_pid()
        os.kill(qemu, signal.SIGSTOP)
        status, body = call(api, "POST", "/v1/vm/pause", timeout=30)
        assert status == 504, (status, body)
        assert body["error"]["code"] == "timeout" and "stop" in body["error"]["message"], body
        run.proc.send_signal(signal.SIGTERM)
        # grace 3 s + quit answer 2 s + SIGKILL; the deadline only bounds a hang.
        code = run.wait_exit(30)
        assert code == 5, f"qshim exit {code}, expected 5 (forced); events: {run.events()}"
        exited = run.event("exited")
        assert exited["reason"] == "forced" and exited.get("signalName") == "KILL", exited
        assert [e["step"] for e in run.events() if e["event"] == "forcing-stop"] == ["quit", "kill"]
        assert process_gone(qemu)


def events_on_a_full_disk():
    """--events to a file that cannot take it (/dev/full: ENOSPC): the VM runs and stops as usual,
    and the problem is logged once, not once per event."""
    with QshimRun() as run:
        run.start([qshim_bin(), "run", "--events", "/dev/full", str(guest_spec(run.tmp))],
                  console_file="console.log")
        run.console.wait_ready(timeout=90)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        lines = [ln for ln in run.stderr_text().splitlines() if "writing events to /dev/full" in ln]
        assert len(lines) == 1, run.stderr_text()
        assert "No space left on device" in lines[0] and "the VM is unaffected" in lines[0], lines


def nonblocking(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


def stdout_flags_untouched():
    """--events - on a pipe or socket it shares with its caller: qshim must not set O_NONBLOCK on
    that open file description (it would change it for the caller, and for good), even when the
    reader falls behind and qshim has to wait for room."""
    for kind in ("pipe", "socket"):
        with QshimRun() as run:
            if kind == "socket":
                mine, theirs = socket.socketpair()
                theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # fills at once
                r, w = mine.fileno(), theirs.fileno()
            else:
                r, w = os.pipe()
            api = run.tmp / "api.sock"
            proc = subprocess.Popen([qshim_bin(), "run", "--events", "-", "--api-socket", str(api),
                                     str(guest_spec(run.tmp))], stdout=w, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                console = Console(run.tmp / "console.log", until=lambda: proc.poll() is not None)
                console.wait_ready(timeout=90)
                # Nobody reads: well over a pipe's or the small socket buffer's worth of events,
                # so qshim must queue and wait for room.
                for _ in range(300):
                    expect(api, "POST", "/v1/vm/pause", timeout=10)
                    expect(api, "POST", "/v1/vm/resume", timeout=10)
                assert not nonblocking(w), f"qshim made the caller's {kind} non-blocking"
                proc.send_signal(signal.SIGTERM)
                # Drain while qshim finishes: its last flush may wait for room.
                os.set_blocking(r, False)
                deadline = time.monotonic() + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        os.read(r, 1 << 16)
                    except BlockingIOError:
                        select.select([r], [], [], 0.1)
                assert proc.wait(30) == 0
                assert not nonblocking(w), f"the {kind} was left non-blocking after qshim exited"
                console.close()
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                if kind == "socket":
                    mine.close()
                    theirs.close()
                else:
                    os.close(r)
                    os.close(w)
    # qshim ending early (a spec that does not load) leaves the flags alone too.
    r, w = os.pipe()
    ended = subprocess.run([qshim_bin(), "run", "--events", "-", "/nonexistent.yaml"], stdout=w,
                           stderr=subprocess.DEVNULL)
    assert ended.returncode == 2
    assert not nonblocking(w)
    os.close(r)
    os.close(w)


def tap_fd():
    """A tap handed over as an inherited fd (spec `fd: 7`) reaches QEMU: the guest sees the NIC at
    its planned address, and packets cross it both ways (the guest's kernel answers a TCP SYN to a
    closed port with a reset). Everything happens in a network namespace the test makes."""
    ns = f"qshim-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with QshimRun() as run:
            spec = guest_spec(run.tmp, cmdline_extra="qshim.ip=10.77.0.2/24",
                              interfaces=[{"name": "net0", "mac": "52:54:00:77:00:02",
                                           "backend": {"type": "tap", "fd": 7}}])
            run.events_path = run.tmp / "events.jsonl"
            run.start(["ip", "netns", "exec", ns, sys.executable, str(LIB / "tap_exec.py"), "qtap0",
                       "10.77.0.1/24", "7", "--", qshim_bin(), "run", "--events", str(run.events_path),
                       str(spec)], console_file="console.log")
            run.console.wait_for(r"QSHIM-GUEST: ip 10\.77\.0\.2/24", timeout=90)
            report = run.console.wait_report(lambda r: r.nic_by_mac("52:54:00:77:00:02"), timeout=60)
            planned = qshim("topology", spec, check=0)
            assert '"mac": "52:54:00:77:00:02"' in planned.stdout
            nic = report.nic_by_mac("52:54:00:77:00:02")
            assert f'"address": "{nic["pci"]}"' in planned.stdout, (nic, planned.stdout)
            probe = ("import socket\n"
                     "s = socket.create_connection(('10.77.0.2', 9), timeout=20)\n")
            r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe],
                               capture_output=True, text=True, timeout=60)
            assert "ConnectionRefusedError" in r.stderr, f"no reset from the guest: {r.stderr}"
            run.proc.send_signal(signal.SIGTERM)
            assert run.wait_exit(30) == 0, run.events()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def tap_fd_refused_before_launch():
    """A tap fd that qshim did not get, or that is not a tap, is a clear error and nothing starts."""
    with QshimRun() as run:
        spec = write_spec(run.tmp, {"name": "tapfd", "memory": {"size": "64Mi"},
                                    "interfaces": [{"name": "net0", "backend": {"type": "tap", "fd": 9}}]})
        missing = qshim("run", spec, check=3)
        assert "interfaces[0].backend.fd (net0): fd 9 is not open in qshim" in missing.stderr, missing.stderr
        r, w = os.pipe()
        os.dup2(r, 9)
        try:
            wrong = subprocess.run([qshim_bin(), "run", str(spec)], capture_output=True, text=True,
                                   pass_fds=(9,), timeout=60)
        finally:
            os.close(9)
            os.close(r)
            os.close(w)
        assert wrong.returncode == 3, wrong.stderr
        assert "fd 9 is not a tap device" in wrong.stderr, wrong.stderr
        assert "QEMU started" not in wrong.stderr


def main():
    for test in (tap_fd_refused_before_launch, stdout_flags_untouched, events_on_a_full_disk,
                 qemu_frozen, tap_fd):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
