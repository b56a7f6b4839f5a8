#!/usr/bin/env python3
"""bench/launch: time to "guest running" and to "QEMU gone" for `qshim run`, side by side with the
same QEMU argv driven by hand over QMP (the floor), plus qshim's own memory while supervising.

Usage: bench/launch.py QSHIM_BINARY GUEST_DIR [RUNS]"""
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def spec(tmp, guest, grace=30, name="bench.json"):
    disk = tmp / "root.raw"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    s = {"name": "bench", "machine": {"accel": "tcg"}, "memory": {"size": "256Mi"},
         "boot": {"kernel": f"{guest}/vmlinuz", "initrd": f"{guest}/initramfs.cpio.gz", "cmdline": "console=ttyS0 quiet"},
         "disks": [{"name": "root", "path": str(disk), "format": "raw"}],
         "interfaces": [{"name": "net0", "backend": {"type": "user"}}],
         "serial": {"log": str(tmp / "console.log")}, "lifecycle": {"gracePeriodSeconds": grace}}
    path = tmp / name
    path.write_text(json.dumps(s))
    return path


def wait_console_ready(log, deadline_s=60):
    end = time.monotonic() + deadline_s
    while b"QSHIM-GUEST: ready" not in log.read_bytes():
        if time.monotonic() > end:
            raise TimeoutError("guest not ready")
        time.sleep(0.01)


def memory_kib(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        fields[k] = int(v.split()[0])
    return fields["Rss"], fields["Pss"]


def forced_stop_qshim(qshim, spec_path, log):
    """gracePeriodSeconds 0: SIGTERM -> quit at once. Returns ms from SIGTERM to qshim's exit
    (QEMU already reaped)."""
    log.write_bytes(b"")
    p = subprocess.Popen([qshim, "run", "--events", "-", str(spec_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    for line in p.stdout:
        if json.loads(line)["event"] == "running":
            break
    wait_console_ready(log)
    t1 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.stdout.read()
    p.wait()
    return (time.monotonic() - t1) * 1000


def forced_stop_floor(argv, log):
    """QMP quit by hand; ms until the QEMU process is gone."""
    log.write_bytes(b"")
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         pass_fds=(3,), preexec_fn=lambda: os.dup2(theirs.fileno(), 3))
    theirs.close()
    qmp = RawQmp(ours)
    qmp.line()
    qmp.command("qmp_capabilities")
    qmp.command("cont")
    wait_console_ready(log)
    t1 = time.monotonic()
    ours.sendall(b'{"execute": "quit"}\n')
    p.wait()
    stop = (time.monotonic() - t1) * 1000
    ours.close()
    return stop


def run_qshim(qshim, spec_path, log):
    """Returns (ms to running, ms from SIGTERM to exit, rss KiB, pss KiB)."""
    log.write_bytes(b"")
    t0 = time.monotonic()
    p = subprocess.Popen([qshim, "run", "--events", "-", str(spec_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    for line in p.stdout:
        if json.loads(line)["event"] == "running":
            break
    running = (time.monotonic() - t0) * 1000
    wait_console_ready(log)
    rss, pss = memory_kib(p.pid)
    t1 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.stdout.read()
    code = p.wait()
    stop = (time.monotonic() - t1) * 1000
    if code != 0:
        raise RuntimeError(f"qshim exited {code}")
    return running, stop, rss, pss


class RawQmp:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name):
        self.sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
        while "return" not in (msg := self.line()) and "error" not in msg:
            pass
        return msg


def run_floor(argv, log):
    """The same argv (-S, QMP on an inherited socketpair) driven by hand: greeting,
    qmp_capabilities, cont. Returns (ms to running, ms from system_powerdown to exit)."""
    log.write_bytes(b"")
    t0 = time.monotonic()
    ours, theirs = socket.socketpair()
    os.set_inheritable(theirs.fileno(), True)
    # qshim's argv names fd 3 for QMP; give QEMU the socket at 3.
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         pass_fds=(3,), preexec_fn=lambda: os.dup2(theirs.fileno(), 3))
    theirs.close()
    qmp = RawQmp(ours)
    qmp.line()  # greeting
    qmp.command("qmp_capabilities")
    qmp.command("cont")
    running = (time.monotonic() - t0) * 1000
    wait_console_ready(log)
    t1 = time.monotonic()
    qmp.command("system_powerdown")
    p.wait()
    stop = (time.monotonic() - t1) * 1000
    ours.close()
    return running, stop


def summary(xs):
    return f"{min(xs):8.1f} {statistics.median(xs):8.1f} {max(xs):8.1f}"


def main():
    qshim, guest = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    with tempfile.TemporaryDirectory(prefix="qshim-bench-") as d:
        tmp = Path(d)
        spec_path = spec(tmp, guest)
        argv = subprocess.run([qshim, "cmdline", "--paused", str(spec_path)], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        # qshim's own argv puts QMP on fd 3; the floor uses the very same command line.
        argv[argv.index("-sandbox") + 2:argv.index("-sandbox") + 2] = ["-chardev", "socket,id=qmp,fd=3",
                                                                        "-mon", "chardev=qmp,mode=control"]
        forced_spec = spec(tmp, guest, grace=0, name="forced.json")
        q, f, qf, ff = [], [], [], []
        for _ in range(runs):  # interleaved, so drift on the machine hits both alike
            q.append(run_qshim(qshim, spec_path, tmp / "console.log"))
            f.append(run_floor(argv, tmp / "console.log"))
            qf.append(forced_stop_qshim(qshim, forced_spec, tmp / "console.log"))
            ff.append(forced_stop_floor(argv, tmp / "console.log"))
    q_run, q_stop = [x[0] for x in q], [x[1] for x in q]
    f_run, f_stop = [x[0] for x in f], [x[1] for x in f]
    print(f"{runs} runs each, TCG, test guest with 1 disk + 1 NIC (ms: min median max)")
    print(f"  start -> running   qshim run      {summary(q_run)}")
    print(f"                     floor (QMP)    {summary(f_run)}")
    overhead = (statistics.median(q_run) / statistics.median(f_run) - 1) * 100
    print(f"                     qshim overhead {overhead:+.1f}% (target < +10%)")
    print(f"  stop -> QEMU gone  qshim SIGTERM  {summary(q_stop)}   (ACPI power button, guest powers off)")
    print(f"                     floor          {summary(f_stop)}   (system_powerdown by hand)")
    print(f"  forced stop        qshim SIGTERM  {summary(qf)}   (gracePeriodSeconds 0: quit, reap, exit)")
    print(f"                     floor          {summary(ff)}   (QMP quit by hand, until QEMU is gone)")
    print(f"  qshim memory while supervising: RSS {statistics.median([x[2] for x in q]) / 1024:.1f} MiB, "
          f"PSS {statistics.median([x[3] for x in q]) / 1024:.1f} MiB (target RSS < 8 MiB)")
    print("  reference (same machines, QEMU 7.2): libvirt 9.0 `virsh create --paused` 366 ms median vs 35 ms bare;"
          " `virsh destroy` 227 ms vs 3 ms; libvirtd + virtlogd ~40 MiB RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
