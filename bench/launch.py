#!/usr/bin/env python3
"""bench/launch: start -> running and stop latency of `qshim run`, side by side with the same QEMU
argv driven by hand over QMP (the floor), and qshim's memory while it supervises a booted guest.

Usage: bench/launch.py QSHIM_BINARY GUEST_DIR [RUNS [BOOTS]]

Start samples (RUNS, default 30, each side): every sample starts from a quiet machine: the
previous QEMU is reaped and no guest is booting. A sample is start -> "running" (qshim's event;
the floor's `cont` reply), then an immediate forced stop (qshim: SIGTERM with gracePeriodSeconds 0,
i.e. `quit`; the floor: `quit`), timed to QEMU gone. The two sides alternate in ABBA order, so
neither always follows the other's teardown. Boot samples (BOOTS, default 5): the guest boots to its
readiness marker, qshim's RSS/PSS are read, and a graceful stop (ACPI power button) is timed.
A run that fails (a guest not ready within 60 s, a process that exits early) is cleaned up, its
console log kept under .cache/bench-failures/, and counted; it never ends the bench."""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAILURES = Path(__file__).resolve().parent.parent / ".cache" / "bench-failures"


def spec(tmp, guest, grace, name):
    disk = tmp / "root.raw"
    if not disk.exists():
        with open(disk, "wb") as f:
            f.truncate(64 << 20)
    s = {"name": "bench", "machine": {"accel": "tcg"}, "memory": {"size": "256Mi"},
         "boot": {"kernel": f"{guest}/vmlinuz", "initrd": f"{guest}/initramfs.cpio.gz",
                  "cmdline": "console=ttyS0 quiet"},
         "disks": [{"name": "root", "path": str(disk), "format": "raw"}],
         "interfaces": [{"name": "net0", "backend": {"type": "user"}}],
         "serial": {"log": str(tmp / "console.log")}, "lifecycle": {"gracePeriodSeconds": grace}}
    path = tmp / name
    path.write_text(json.dumps(s))
    return path


class BenchFailure(RuntimeError):
    pass


def wait_console_ready(log, proc, deadline_s=60):
    """The guest's readiness marker, with a deadline; a process that ends first fails at once."""
    end = time.monotonic() + deadline_s
    while b"QSHIM-GUEST: ready" not in log.read_bytes():
        if proc.poll() is not None:
            raise BenchFailure(f"the process exited ({proc.returncode}) before the guest was ready")
        if time.monotonic() > end:
            raise BenchFailure(f"guest not ready within {deadline_s} s")
        time.sleep(0.01)


def keep_failure(tmp, what, error):
    FAILURES.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept = FAILURES / f"{stamp}-{what}-console.log"
    if (tmp / "console.log").exists():
        shutil.copyfile(tmp / "console.log", kept)
    print(f"  FAILED {what}: {error}; console log kept in {kept}", file=sys.stderr)


def kill(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def memory_kib(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        fields[k] = int(v.split()[0])
    return fields["Rss"], fields["Pss"]


class RawQmp:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise BenchFailure("QMP closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name):
        self.sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
        while "return" not in (msg := self.line()) and "error" not in msg:
            pass
        return msg


def start_qshim(qshim, spec_path):
    return subprocess.Popen([qshim, "run", "--events", "-", str(spec_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def until_running(p):
    for line in p.stdout:
        if json.loads(line)["event"] == "running":
            return
    raise BenchFailure(f"qshim ended ({p.wait()}) before the guest ran")


def start_floor(argv):
    ours, theirs = socket.socketpair()
    # The argv names fd 3 for QMP, as qshim's does; the socket goes there. Placed in this process
    # (not with preexec_fn, which would make Python fork instead of vfork and slow the floor).
    saved = os.dup(3) if fd_open(3) else None
    os.dup2(theirs.fileno(), 3)
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, pass_fds=(3,), start_new_session=True)
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3)
            os.close(saved)
    theirs.close()
    qmp = RawQmp(ours)
    qmp.line()  # greeting
    qmp.command("qmp_capabilities")
    qmp.command("cont")
    return p, qmp, ours


def fd_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def stop_qshim(p):
    """SIGTERM, then ms until qshim exited (QEMU reaped); a non-zero exit is a failure."""
    t1 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.stdout.read()
    code = p.wait()
    stop = (time.monotonic() - t1) * 1000
    if code != 0:
        raise BenchFailure(f"qshim exited {code}")
    return stop


def sample_qshim(qshim, forced_spec):
    """(ms start -> running, ms SIGTERM -> exit with QEMU reaped) with gracePeriodSeconds 0."""
    t0 = time.monotonic()
    p = start_qshim(qshim, forced_spec)
    try:
        until_running(p)
        running = (time.monotonic() - t0) * 1000
        return running, stop_qshim(p)
    finally:
        kill(p)


def sample_floor(argv):
    t0 = time.monotonic()
    p, qmp, sock = start_floor(argv)
    try:
        running = (time.monotonic() - t0) * 1000
        t1 = time.monotonic()
        sock.sendall(b'{"execute": "quit"}\n')
        p.wait()
        stop = (time.monotonic() - t1) * 1000
    finally:
        sock.close()
        kill(p)
    return running, stop


def boot_qshim(qshim, spec_path, log):
    """A booted guest: qshim's (rss, pss) while supervising, then ms from SIGTERM (ACPI) to exit."""
    log.write_bytes(b"")
    p = start_qshim(qshim, spec_path)
    try:
        until_running(p)
        wait_console_ready(log, p)
        rss, pss = memory_kib(p.pid)
        return stop_qshim(p), rss, pss
    finally:
        kill(p)


def boot_floor(argv, log):
    log.write_bytes(b"")
    p, qmp, sock = start_floor(argv)
    try:
        wait_console_ready(log, p)
        t1 = time.monotonic()
        qmp.command("system_powerdown")
        p.wait()
        return (time.monotonic() - t1) * 1000
    finally:
        sock.close()
        kill(p)


def summary(xs):
    if not xs:
        return "      (no samples)"
    return f"{min(xs):8.1f} {statistics.median(xs):8.1f} {max(xs):8.1f}"


def ratio(a, b, f):
    return (f(a) / f(b) - 1) * 100


def main():
    qshim, guest = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    boots = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    failed = 0
    with tempfile.TemporaryDirectory(prefix="qshim-bench-") as d:
        tmp = Path(d)
        graceful = spec(tmp, guest, 30, "bench.json")
        forced = spec(tmp, guest, 0, "forced.json")
        argv = subprocess.run([qshim, "cmdline", "--paused", str(graceful)], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        at = argv.index("-sandbox") + 2
        argv[at:at] = ["-chardev", "socket,id=qmp,fd=3", "-mon", "chardev=qmp,mode=control"]
        q_run, q_stop, f_run, f_stop = [], [], [], []
        for i in range(runs):
            order = ("qshim", "floor") if i % 2 == 0 else ("floor", "qshim")  # ABBA
            for side in order:
                try:
                    if side == "qshim":
                        r, s = sample_qshim(qshim, forced)
                        q_run.append(r)
                        q_stop.append(s)
                    else:
                        r, s = sample_floor(argv)
                        f_run.append(r)
                        f_stop.append(s)
                except BenchFailure as e:
                    failed += 1
                    keep_failure(tmp, f"start-{side}", e)
        log = tmp / "console.log"
        qb_stop, fb_stop, rss, pss = [], [], [], []
        for i in range(boots):
            try:
                s, r, p = boot_qshim(qshim, graceful, log)
                qb_stop.append(s)
                rss.append(r)
                pss.append(p)
            except BenchFailure as e:
                failed += 1
                keep_failure(tmp, "boot-qshim", e)
            try:
                fb_stop.append(boot_floor(argv, log))
            except BenchFailure as e:
                failed += 1
                keep_failure(tmp, "boot-floor", e)

    print(f"start -> running, TCG, test guest with 1 disk + 1 NIC, ABBA-interleaved "
          f"(N = {len(q_run)} qshim, {len(f_run)} floor; ms: min median max)")
    print(f"  qshim run      {summary(q_run)}")
    print(f"  floor (QMP)    {summary(f_run)}")
    if q_run and f_run:
        print(f"  qshim / floor  min {ratio(q_run, f_run, min):+.1f}%   median "
              f"{ratio(q_run, f_run, statistics.median):+.1f}%   (target: median < +5%)")
    print(f"forced stop -> QEMU gone (gracePeriodSeconds 0: quit; same N)")
    print(f"  qshim SIGTERM  {summary(q_stop)}")
    print(f"  floor quit     {summary(f_stop)}")
    print(f"booted guest (N = {len(qb_stop)} qshim, {len(fb_stop)} floor): graceful stop -> QEMU gone")
    print(f"  qshim SIGTERM  {summary(qb_stop)}   (ACPI power button, guest powers off)")
    print(f"  floor          {summary(fb_stop)}   (system_powerdown by hand)")
    if rss:
        print(f"  qshim memory while supervising: RSS {statistics.median(rss) / 1024:.1f} MiB, "
              f"PSS {statistics.median(pss) / 1024:.1f} MiB (median; target RSS < 8 MiB)")
    print(f"failed runs: {failed}" + (f" (console logs in {FAILURES})" if failed else ""))
    print("reference (same machines, QEMU 7.2): libvirt 9.0 `virsh create --paused` 366 ms median vs 35 ms"
          " bare; `virsh destroy` 227 ms vs 3 ms; libvirtd + virtlogd ~40 MiB RSS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
