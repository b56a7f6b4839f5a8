#!/usr/bin/env python3
"""bench/hotplug: latency of a disk hotplug through qshim's REST API, side by side with the same
blockdev-add + blockdev-add + device_add sent over a raw QMP socket to the same QEMU.

Usage: bench/hotplug.py QSHIM_BINARY GUEST_DIR [RUNS]"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "lib"))
from qshim_api import expect  # noqa: E402
from qshim_guest import Qmp  # noqa: E402
from qshim_run import wait_until  # noqa: E402


def wait_deleted(qmp, device_id, timeout=60):
    """Waits for DEVICE_DELETED naming device_id (QEMU sends another one for its virtio backend)."""
    end = time.monotonic() + timeout
    while True:
        event = qmp.wait_event("DEVICE_DELETED", timeout=max(0.1, end - time.monotonic()))
        qmp.events.remove(event)
        if event["data"].get("device") == device_id:
            return


def main():
    qshim, guest = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    with tempfile.TemporaryDirectory(prefix="qshim-bench-") as d:
        tmp = Path(d)
        for name in ("root.raw", "data.raw"):
            with open(tmp / name, "wb") as f:
                f.truncate(16 << 20)
        spec = {"name": "hpbench", "machine": {"accel": "tcg"}, "memory": {"size": "256Mi"},
                "boot": {"kernel": f"{guest}/vmlinuz", "initrd": f"{guest}/initramfs.cpio.gz", "cmdline": "console=ttyS0 quiet"},
                "disks": [{"name": "root", "path": str(tmp / "root.raw"), "format": "raw"}],
                "hotplug": {"disks": 2, "interfaces": 0}, "serial": {"log": str(tmp / "console.log")}}
        (tmp / "vm.json").write_text(json.dumps(spec))
        api, qmp_path = tmp / "api.sock", tmp / "qmp.sock"
        p = subprocess.Popen([qshim, "run", "--api-socket", str(api), "--qmp-socket", str(qmp_path), str(tmp / "vm.json")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: (tmp / "console.log").exists() and b"QSHIM-GUEST: ready" in (tmp / "console.log").read_bytes(),
                     90, "guest ready")
            qmp = Qmp(qmp_path)
            via_api, via_qmp = [], []
            for i in range(runs):
                t0 = time.monotonic()
                expect(api, "POST", "/v1/vm/disks", {"name": "bench", "path": str(tmp / "data.raw"), "format": "raw"}, 201)
                via_api.append((time.monotonic() - t0) * 1000)
                expect(api, "DELETE", "/v1/vm/disks/bench")  # waits for the guest to let go

                # The same three commands by hand, into the same (now free) port.
                t0 = time.monotonic()
                qmp.execute("blockdev-add", {"driver": "file", "filename": str(tmp / "data.raw"), "node-name": "f.raw",
                                             "read-only": False, "discard": "unmap"})
                qmp.execute("blockdev-add", {"driver": "raw", "file": "f.raw", "node-name": "b.raw", "read-only": False})
                qmp.execute("device_add", {"driver": "virtio-blk-pci", "id": "rawdisk", "drive": "b.raw",
                                           "bus": "rp.disks.1", "addr": "0x0", "serial": "raw"})
                via_qmp.append((time.monotonic() - t0) * 1000)
                qmp.events.clear()  # the API's own unplugs report to this monitor too
                qmp.execute("device_del", {"id": "rawdisk"})
                wait_deleted(qmp, "rawdisk")  # the drive is released only then
                qmp.execute("blockdev-del", {"node-name": "b.raw"})
                qmp.execute("blockdev-del", {"node-name": "f.raw"})
            qmp.close()
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
    s = lambda xs: f"{min(xs):7.2f} {statistics.median(xs):7.2f} {max(xs):7.2f}"
    print(f"disk hotplug, {runs} runs each, ms (min median max)")
    print(f"  REST API (validate, place, 3 QMP commands, respond)  {s(via_api)}")
    print(f"  raw QMP (the same 3 commands by hand)               {s(via_qmp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
