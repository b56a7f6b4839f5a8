#!/usr/bin/env python3
"""qshim run as a container entrypoint: graceful stop, forced stop, QEMU killed behind its back."""
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

from qshim_api import expect
from qshim_cli import qshim_bin
from qshim_guest import Console, Qmp
from qshim_run import QshimRun, guest_spec, proc_state, process_gone, wait_until


def event_time(event):
    """An event's `time` (RFC 3339, UTC, microseconds) as seconds since the epoch."""
    return datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def graceful_stop():
    """Boot, readiness marker, SIGTERM: the guest powers off in its grace period, exit 0, nothing left."""
    with QshimRun() as run:
        run.run(guest_spec(run.tmp, grace=20))
        run.console.wait_ready(timeout=90)
        qemu = run.qemu_pid()
        assert run.event("running"), run.events()
        assert (run.tmp / "console.sock").exists(), "QEMU should serve the console socket while running"
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait_exit(20)
        assert code == 0, f"qshim exit {code}, expected 0; events: {run.events()}"
        names = [e["event"] for e in run.events()]
        assert names == ["spec-accepted", "qemu-started", "qmp-connected", "running", "shutdown-requested",
                         "guest-shutdown", "exited"], names
        exited = run.event("exited")
        assert exited["reason"] == "stopped" and exited["code"] == 0, exited
        assert process_gone(qemu), f"QEMU {qemu} still exists"
        assert not (run.tmp / "console.sock").exists(), "the console socket was left behind"


def forced_stop():
    """A guest that ignores the power button is stopped by force after the grace period: exit 5."""
    with QshimRun() as run:
        run.run(guest_spec(run.tmp, cmdline_extra="qshim.acpi=ignore", grace=2))
        run.console.wait_ready(timeout=90)
        qemu = run.qemu_pid()
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait_exit(20)
        assert code == 5, f"qshim exit {code}, expected 5 (forced); events: {run.events()}"
        steps = [e["step"] for e in run.events() if e["event"] == "forcing-stop"]
        assert steps and steps[0] == "quit", steps
        # The grace period, on qshim's own clock: escalation came no earlier than 2 s after the ask.
        asked, forced = event_time(run.event("shutdown-requested")), event_time(run.event("forcing-stop"))
        assert forced - asked >= 2.0, f"escalated {forced - asked:.3f} s after the request: grace not honoured"
        assert run.event("exited")["reason"] == "forced"
        assert not run.event("guest-shutdown")
        assert process_gone(qemu)
        assert not (run.tmp / "console.sock").exists()


def qemu_killed():
    """QEMU killed with SIGKILL behind qshim's back: an exited event naming the signal, exit 4,
    without waiting for anything (the pidfd wakes qshim; the deadline only bounds a hang)."""
    with QshimRun() as run:
        run.run(guest_spec(run.tmp))
        run.console.wait_ready(timeout=90)
        qemu = run.qemu_pid()
        os.kill(qemu, signal.SIGKILL)
        code = run.wait_exit(10)
        assert code == 4, f"qshim exit {code}, expected 4 (crashed)"
        exited = run.event("exited")
        assert exited["signal"] == 9 and exited["signalName"] == "KILL" and exited["reason"] == "crashed", exited
        assert not (run.tmp / "console.sock").exists(), "a killed QEMU's socket must be removed by qshim"


def guest_powers_off():
    """The guest powering off by itself ends qshim with 0, with nothing asked of it."""
    with QshimRun() as run:
        run.run(guest_spec(run.tmp, cmdline_extra="qshim.poweroff"))
        code = run.wait_exit(90)
        assert code == 0, f"qshim exit {code}, expected 0; events: {run.events()}"
        assert run.event("guest-shutdown"), run.events()
        assert not run.event("shutdown-requested")
        exited = run.event("exited")
        assert exited["reason"] == "guest-shutdown" and exited["code"] == 0, exited
        assert "QSHIM-GUEST: poweroff" in run.console.text()
        assert process_gone(exited["pid"])


def exit_and_shutdown_noticed_together():
    """QEMU's last SHUTDOWN event and its exit reach qshim in the same wake-up (qshim was frozen
    meanwhile): the guest's own power-off must still be told from a crash, and `exited` be last."""
    with QshimRun() as run:
        qmp_path = run.tmp / "qmp.sock"
        run.run(guest_spec(run.tmp), "--qmp-socket", str(qmp_path))
        run.console.wait_ready(timeout=90)
        qemu = run.qemu_pid()
        qmp = Qmp(qmp_path)
        os.kill(run.proc.pid, signal.SIGSTOP)
        try:
            qmp.execute("system_powerdown")
            wait_until(lambda: proc_state(qemu) == "Z", 20, "QEMU exited (a zombie of the frozen qshim)")
        finally:
            os.kill(run.proc.pid, signal.SIGCONT)
        qmp.close()
        assert run.wait_exit(10) == 0, run.events()
        names = [e["event"] for e in run.events()]
        assert names[-1] == "exited" and "guest-shutdown" in names, names
        assert run.event("exited")["reason"] == "guest-shutdown"


def events_reader_gone():
    """The reader of --events - goes away: qshim carries on (no SIGPIPE) and still stops cleanly."""
    with QshimRun() as run:
        spec = guest_spec(run.tmp)
        proc = subprocess.Popen([qshim_bin(), "run", "--events", "-", str(spec)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.stdout.readline()  # spec-accepted
            proc.stdout.close()     # the reader is gone; later events meet EPIPE
            console = Console(run.tmp / "console.log", until=lambda: proc.poll() is not None)
            console.wait_ready(timeout=90)
            assert proc.poll() is None, f"qshim died with {proc.returncode} when its events reader left"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            console.close()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def events_reader_stalls():
    """A reader that stops reading its FIFO must not stall the supervisor: with the pipe full,
    the API still answers and the VM still stops gracefully; every line written stays whole."""
    with QshimRun() as run:
        fifo, api = run.tmp / "events.fifo", run.tmp / "api.sock"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, then never read until the end
        try:
            run.start([qshim_bin(), "run", "--events", str(fifo), "--api-socket", str(api),
                       str(guest_spec(run.tmp))], console_file="console.log")
            run.console.wait_ready(timeout=90)
            # ~90 KiB of events, more than a pipe holds: a blocking writer would wedge qshim here.
            for _ in range(600):
                expect(api, "POST", "/v1/vm/pause", timeout=10)
                expect(api, "POST", "/v1/vm/resume", timeout=10)
            run.proc.send_signal(signal.SIGTERM)
            assert run.wait_exit(30) == 0
            data = b""
            while chunk := os.read(reader, 1 << 16):
                data += chunk
        finally:
            os.close(reader)
        lines = data.decode().splitlines()
        events = [json.loads(line)["event"] for line in lines]  # every line whole JSON
        assert events.count("paused") > 100, f"only {events.count('paused')} paused events came through"


def stop_while_starting():
    """SIGTERM before the guest ever ran: QEMU goes at once, no `running`, a clean exit 0."""
    with QshimRun() as run:
        slow = run.tmp / "slow-qemu"
        slow.write_text("#!/bin/sh\nsleep 2\nexec qemu-system-x86_64 \"$@\"\n")
        slow.chmod(0o755)
        run.run(guest_spec(run.tmp), "--qemu", str(slow))
        run.wait_event("qemu-started", 10)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(10) == 0, run.events()
        assert not run.event("running"), run.events()
        assert run.event("exited")["reason"] == "stopped"
        assert process_gone(run.qemu_pid())


def main():
    for test in (graceful_stop, forced_stop, qemu_killed, guest_powers_off, exit_and_shutdown_noticed_together,
                 events_reader_gone, events_reader_stalls, stop_while_starting):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
