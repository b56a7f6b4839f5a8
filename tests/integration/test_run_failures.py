#!/usr/bin/env python3
"""qshim run when things go wrong: nothing half-started, and errors that say what happened.
Also the PID 1 duty of reaping orphans, in a real PID namespace."""
import os
import re
import signal
import stat
import subprocess
import sys

from qshim_cli import qshim, write_spec
from qshim_run import QshimRun, guest_spec, proc_state, wait_until


def fake_qemu(tmp, body):
    """A --qemu stand-in that records it was started, then runs `body` (shell)."""
    path = tmp / "fake-qemu"
    path.write_text(f"#!/bin/sh\ntouch '{tmp}/qemu-was-started'\n{body}\n")
    path.chmod(0o755)  # QEMU's uid runs it
    return path


def invalid_spec_starts_nothing():
    with QshimRun() as run:
        qemu = fake_qemu(run.tmp, 'exec qemu-system-x86_64 "$@"')
        spec = write_spec(run.tmp, {"name": "bad", "disks": [{"name": "d", "path": "d.img", "format": "vmdk"}]})
        r = qshim("run", "--qemu", qemu, spec, check=2)
        assert "disks[0].format: must be one of raw, qcow2" in r.stderr, r.stderr
        assert not (run.tmp / "qemu-was-started").exists(), "an invalid spec started QEMU"


def missing_image_starts_nothing():
    with QshimRun() as run:
        qemu = fake_qemu(run.tmp, 'exec qemu-system-x86_64 "$@"')
        spec = write_spec(run.tmp, {"name": "gone", "disks": [{"name": "root", "path": "nowhere.raw", "format": "raw"}]})
        r = qshim("run", "--qemu", qemu, spec, check=3)
        # Where the path was written (FILE:LINE:COL), as editors jump to, then the summary.
        assert re.search(rf"^{re.escape(str(spec))}:\d+:\d+: disks\[0\] \(root\): "
                         rf"{re.escape(str(run.tmp))}/nowhere.raw: No such file or directory$",
                         r.stderr, re.M), r.stderr
        assert "qshim: checking what VM gone needs: 1 problem:\n" in r.stderr, r.stderr
        assert not (run.tmp / "qemu-was-started").exists(), "a missing image still started QEMU"


def qemu_rejects_the_plan():
    """A real rejection: a CPU model QEMU does not know (the spec only checks its spelling). Exit 3
    with QEMU's status, argv and the tail of its stderr."""
    with QshimRun() as run:
        spec = guest_spec(run.tmp, cpu={"model": "no-such-cpu"})
        r = qshim("run", spec, check=3, timeout=60)
        assert "QEMU exited with status 1" in r.stderr, r.stderr
        assert "argv: qemu-system-x86_64 " in r.stderr and "-cpu no-such-cpu" in r.stderr, r.stderr
        assert "QEMU stderr (last lines):" in r.stderr and "no-such-cpu" in r.stderr.split("QEMU stderr")[1], r.stderr
        assert not (run.tmp / "console.sock").exists()


def qemu_binary_missing():
    with QshimRun() as run:
        spec = guest_spec(run.tmp)
        r = qshim("run", "--qemu", str(run.tmp / "no-such-qemu"), spec, check=3)
        assert "No such file or directory" in r.stderr, r.stderr


def reaps_orphans_as_pid1():
    """As PID 1 of a PID namespace, orphans re-parented to qshim are reaped, QEMU included at the end."""
    with QshimRun() as run:
        # The subshell exits at once, so its `sleep` is orphaned and re-parented to PID 1: qshim.
        qemu = fake_qemu(run.tmp, '( sleep 2 & )\nexec qemu-system-x86_64 "$@"')
        spec = guest_spec(run.tmp)
        run.start(["unshare", "--pid", "--fork", qshim_path(), "run", "--qemu", str(qemu), str(spec)],
                  console_file="console.log")
        wait_until(lambda: children(run.proc.pid), 10, "qshim started")
        qshim_pid = children(run.proc.pid)[0]
        # The orphan must first become qshim's child (QEMU's sibling), then go: reaped, not a zombie.
        wait_until(lambda: len(children(qshim_pid)) == 2, 10, "the orphan re-parented to qshim")
        wait_until(lambda: len(children(qshim_pid)) == 1, 10, "the orphan reaped")
        run.console.wait_ready(timeout=90)
        assert zombies(qshim_pid) == [], "qshim left zombies"
        os.kill(qshim_pid, signal.SIGTERM)
        assert run.wait_exit(20) == 0


def qshim_path():
    from qshim_cli import qshim_bin
    return qshim_bin()


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def zombies(parent):
    return [child for child in children(parent) if proc_state(child) == "Z"]


def live_socket_is_not_taken():
    """A second VM asking for the console socket a running VM serves fails to start; the first
    VM's socket stays."""
    with QshimRun() as first:
        spec = guest_spec(first.tmp)
        first.run(spec)
        first.console.wait_ready(timeout=90)
        r = qshim("run", spec, check=3, timeout=60)
        assert f"serial.socket: {first.tmp}/console.sock: is in use" in r.stderr, r.stderr
        assert (first.tmp / "console.sock").exists(), "the running VM's console socket was removed"


def main():
    for test in (live_socket_is_not_taken, invalid_spec_starts_nothing, missing_image_starts_nothing, qemu_rejects_the_plan,
                 qemu_binary_missing, reaps_orphans_as_pid1):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
