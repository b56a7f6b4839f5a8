#!/usr/bin/env python3
"""bench/boots: how reliably the test guest reaches its readiness marker, under qshim and under
QEMU started by hand, alternating. A boot that is not ready within the deadline is a failure; its
console log is kept under .cache/bench-failures/ and the VM is killed. Tells a guest that hangs
(both sides fail) from a supervisor that loses boots (only qshim's fail).

Usage: bench/boots.py QSHIM_BINARY GUEST_DIR [BOOTS [DEADLINE_S]]"""
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch import (BenchFailure, keep_failure, kill, spec, start_floor, start_qshim,  # noqa: E402
                    until_running, wait_console_ready)


def boot(start, log, deadline):
    log.write_bytes(b"")
    t0 = time.monotonic()
    p, close = start()
    try:
        wait_console_ready(log, p, deadline)
        return (time.monotonic() - t0) * 1000
    finally:
        close()
        kill(p)


def main():
    qshim, guest = sys.argv[1], sys.argv[2]
    boots = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    deadline = float(sys.argv[4]) if len(sys.argv) > 4 else 60
    results = {"qshim": [], "floor": []}
    failed = {"qshim": 0, "floor": 0}
    with tempfile.TemporaryDirectory(prefix="qshim-boots-") as d:
        tmp = Path(d)
        path = spec(tmp, guest, 0, "boot.json")
        argv = subprocess.run([qshim, "cmdline", "--paused", str(path)], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        at = argv.index("-sandbox") + 2
        argv[at:at] = ["-chardev", "socket,id=qmp,fd=3", "-mon", "chardev=qmp,mode=control"]

        def via_qshim():
            p = start_qshim(qshim, path)
            until_running(p)
            return p, lambda: None

        def by_hand():
            p, _, sock = start_floor(argv)
            return p, sock.close

        for i in range(boots):
            for side, start in (("qshim", via_qshim), ("floor", by_hand)):
                try:
                    results[side].append(boot(start, tmp / "console.log", deadline))
                except BenchFailure as e:
                    failed[side] += 1
                    keep_failure(tmp, f"boot-{side}-{i}", e)
    print(f"guest boots to its readiness marker (TCG; deadline {deadline:.0f} s; ms: min median max)")
    for side in ("qshim", "floor"):
        xs = results[side]
        stats = f"{min(xs):8.0f} {statistics.median(xs):8.0f} {max(xs):8.0f}" if xs else "(none)"
        print(f"  {side:6} N = {len(xs) + failed[side]:3}  ready {len(xs):3}  failed {failed[side]:2}   {stats}")
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
