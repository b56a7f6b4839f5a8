#!/usr/bin/env python3
# Smoke test of the test guest itself: QEMU directly, no qshim; device reports, ACPI powerdown, qshim.acpi=ignore.
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep lib/__pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from qshim_guest import GuestError, Qmp, QemuProcess, base_qemu_argv, guest_dir  # noqa: E402

MAC = "52:54:00:aa:bb:01"


def dev(**props):
    return ["-device", json.dumps(props)]


def smoke_argv(q, extra_cmdline=""):
    """Two root ports in multifunction slot 00:02 (buses 01 and 02): a virtio-blk disk and a virtio-net NIC."""
    disk = q.path("disk1.raw")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)  # sparse raw image, like `truncate -s 16M`
    blockdev = {"driver": "raw", "node-name": "disk1",
                "file": {"driver": "file", "filename": disk}}
    return (base_qemu_argv(guest_dir(), extra_cmdline)
            + ["-qmp", f"unix:{q.path('qmp.sock')},server=on,wait=off"]
            + dev(driver="pcie-root-port", id="rp1", bus="pcie.0", addr="0x2.0",
                  chassis=1, multifunction=True)
            + dev(driver="pcie-root-port", id="rp2", bus="pcie.0", addr="0x2.1", chassis=2)
            + ["-blockdev", json.dumps(blockdev)]
            + dev(driver="virtio-blk-pci", id="vd1", drive="disk1", serial="smoke1", bus="rp1")
            + ["-netdev", json.dumps({"type": "user", "id": "net1"})]
            + dev(driver="virtio-net-pci", id="nic1", netdev="net1", mac=MAC, bus="rp2"))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def test_report_and_powerdown():
    with QemuProcess() as q:
        t0 = time.monotonic()
        q.start(smoke_argv(q))
        q.console.wait_ready(timeout=60)
        print(f"ok guest ready after {time.monotonic() - t0:.1f}s")

        r = q.console.wait_report(timeout=5)
        check(r.seq == 1, f"first report has seq {r.seq}")
        check(r.disks.get("vda") == {"bus": "virtio", "serial": "smoke1", "pci": "0000:01:00.0"},
              f"virtio-blk disk: {r.disks}")
        check(r.nics.get("eth0") == {"mac": MAC, "pci": "0000:02:00.0"}, f"virtio-net nic: {r.nics}")
        check(r.pci.get("0000:01:00.0") == ("1af4", "1042", "010000"), f"pci 01:00.0: {r.pci}")
        check(r.pci.get("0000:02:00.0") == ("1af4", "1041", "020000"), f"pci 02:00.0: {r.pci}")
        for port in ("0000:00:02.0", "0000:00:02.1"):
            check(r.pci.get(port) == ("1b36", "000c", "060400"), f"root port {port}: {r.pci}")
        print("ok report shows disk smoke1 at 0000:01:00.0 and nic at 0000:02:00.0")

        qmp = Qmp(q.path("qmp.sock"))
        qmp.execute("system_powerdown")
        ev = qmp.wait_event("SHUTDOWN", timeout=10)
        check(ev["data"].get("guest") is True, f"SHUTDOWN not caused by the guest: {ev}")
        rc = q.wait_exit(10)
        check(rc == 0, f"qemu exit code {rc}")
        q.console.wait_for(r"QSHIM-GUEST: powerdown", timeout=1)
        print("ok system_powerdown: guest powered off, qemu exited")


def test_acpi_ignore():
    with QemuProcess() as q:
        q.start(smoke_argv(q, "qshim.acpi=ignore"))
        q.console.wait_ready(timeout=60)
        q.console.wait_for(r"QSHIM-GUEST: acpi power button ignored", timeout=1)
        qmp = Qmp(q.path("qmp.sock"))
        qmp.execute("system_powerdown")
        # A negative check needs a bounded wait: the guest must still be running afterwards.
        try:
            rc = q.wait_exit(3)
        except TimeoutError:
            rc = None
        check(rc is None, f"qemu exited ({rc}) although the guest ignores the power button")
        check("QSHIM-GUEST: powerdown" not in q.console.text(), "guest reacted to the power button")
        print("ok qshim.acpi=ignore: guest still running 3s after system_powerdown")


def main():
    try:
        guest_dir()
    except GuestError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    failed = 0
    tests = [test_report_and_powerdown, test_acpi_ignore]
    for t in tests:
        try:
            t()
        except Exception as e:  # report and go on, so one run shows every failure
            failed += 1
            print(f"FAIL {t.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
