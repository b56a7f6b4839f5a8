#!/usr/bin/env python3
"""Hot-plug through the REST API into a running guest: the guest sees each disk serial and MAC at
the address the API returned; unplug leaves nothing behind in QEMU; every failure leaves QEMU
exactly as it was."""
import json
import os
import sys

from qshim_api import call, expect
from qshim_cli import qshim, write_spec
from qshim_guest import Qmp, give_to_qemu
from qshim_run import QshimRun, guest_spec


def qemu_state(qmp):
    """What a failed or undone hotplug must leave unchanged: block nodes and PCI devices."""
    nodes = sorted(n["node-name"] for n in qmp.execute("query-named-block-nodes"))

    def walk(devices):
        for d in devices:
            yield f"{d['bus']:02x}:{d['slot']:02x}.{d['function']} {d['qdev_id']}"
            yield from walk(d.get("pci_bridge", {}).get("devices", []))
    pci = sorted(walk(qmp.execute("query-pci")[0]["devices"]))
    return nodes, pci


def image(run, name, size=1 << 20, content=b""):
    path = run.tmp / name
    with open(path, "wb") as f:
        f.write(content)
        f.truncate(size)
    return str(give_to_qemu(path))


def as_other_uid(api):
    """GET /v1/vm as uid 65534 in a child process: the HTTP status, or "EACCES"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                result = str(call(api, "GET", "/v1/vm", timeout=10)[0])
            except PermissionError:
                result = "EACCES"
        except BaseException as e:  # never let the child run on into the test
            result = repr(e)
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    result = os.read(read, 256).decode()
    os.close(read)
    os.waitpid(pid, 0)
    return int(result) if result.isdigit() else result


def main():
    with QshimRun() as run:
        api, qmp_path = run.tmp / "api.sock", run.tmp / "qmp.sock"
        spec = guest_spec(run.tmp, name="hot", hotplug={"disks": 2, "interfaces": 1})
        run.run(spec, "--api-socket", str(api), "--qmp-socket", str(qmp_path))
        run.console.wait_ready(timeout=90)
        qmp = Qmp(qmp_path)
        assert oct(os.stat(api).st_mode & 0o777) == "0o600", "the API socket must be 0600"
        before = qemu_state(qmp)

        # Plug a disk and a NIC: the guest sees them exactly where the API said.
        disk = expect(api, "POST", "/v1/vm/disks",
                      {"name": "hot1", "path": image(run, "hot1.raw"), "format": "raw", "serial": "HOT-1"}, 201)
        assert disk["address"] == "0000:02:00.0", disk  # the first free disk port after root's
        nic = expect(api, "POST", "/v1/vm/interfaces",
                     {"name": "hotnic", "mac": "52:54:00:aa:bb:cc", "backend": {"type": "user"}}, 201)
        report = run.console.wait_report(
            lambda r: r.disk_by_serial("HOT-1") and r.nic_by_mac("52:54:00:aa:bb:cc"), timeout=60)
        assert report.disk_by_serial("HOT-1")["pci"] == disk["address"], report
        assert report.nic_by_mac("52:54:00:aa:bb:cc")["pci"] == nic["address"], report

        # The live spec plans to exactly the live topology: a new VM from it would match.
        vm = expect(api, "GET", "/v1/vm")
        assert vm["state"] == "running" and vm["pid"] > 0, vm
        assert any(d["name"] == "hot1" and d["pciAddress"] == disk["address"] for d in vm["spec"]["disks"]), vm["spec"]
        live = write_spec(run.tmp, vm["spec"], "live.json")
        live_topology = expect(api, "GET", "/v1/vm/topology")
        assert json.loads(qshim("topology", live, check=0).stdout) == live_topology

        # Failures change nothing in QEMU.
        plugged = qemu_state(qmp)
        status, err = call(api, "POST", "/v1/vm/disks", {"name": "gone", "path": str(run.tmp / "nope.raw"), "format": "raw"})
        assert status == 400 and err["error"]["fields"][0]["path"] == "path", (status, err)
        status, err = call(api, "POST", "/v1/vm/disks", {"name": "root", "path": image(run, "dup.raw"), "format": "raw"})
        assert status == 409, (status, err)
        status, err = call(api, "POST", "/v1/vm/disks", {"name": "bad", "path": image(run, "bad.img"), "format": "qcow2"})
        assert status == 400 and "qcow2" in err["error"]["message"], (status, err)  # file node rolled back
        status, err = call(api, "POST", "/v1/vm/disks", {"name": "x", "format": "vmdk"})
        assert status == 400 and len(err["error"]["fields"]) == 2, (status, err)  # path missing, format bad
        expect(api, "POST", "/v1/vm/disks", {"name": "hot2", "path": image(run, "hot2.raw"), "format": "raw"}, 201)
        status, err = call(api, "POST", "/v1/vm/disks", {"name": "hot3", "path": image(run, "hot3.raw"), "format": "raw"})
        assert status == 409 and "no free hotplug port" in err["error"]["message"], (status, err)
        expect(api, "DELETE", "/v1/vm/disks/hot2")
        assert qemu_state(qmp) == plugged, "a failed hotplug left something behind"
        assert call(api, "DELETE", "/v1/vm/disks/nothere")[0] == 404

        # Unplug both: the guest lets go, and QEMU is back where it started.
        expect(api, "DELETE", "/v1/vm/disks/hot1")
        expect(api, "DELETE", "/v1/vm/interfaces/hotnic")
        run.console.wait_report(lambda r: not r.disk_by_serial("HOT-1") and not r.nic_by_mac("52:54:00:aa:bb:cc")
                                and disk["address"] not in r.pci and nic["address"] not in r.pci, timeout=60)
        assert qemu_state(qmp) == before, f"left behind after unplug:\n{qemu_state(qmp)}\nvs\n{before}"
        assert not any(d["name"] == "hot1" for d in expect(api, "GET", "/v1/vm")["spec"]["disks"])

        # A guest that cannot answer (paused) does not release a device: 504, listed as removing,
        # reads still answered; once it runs again the removal completes by itself.
        expect(api, "POST", "/v1/vm/disks", {"name": "slow", "path": image(run, "slow.raw"), "format": "raw"}, 201)
        run.console.wait_report(lambda r: any(d.get("serial") == "slow" for d in r.disks.values()), timeout=60)
        expect(api, "POST", "/v1/vm/pause")
        status, err = call(api, "DELETE", "/v1/vm/disks/slow?timeoutSeconds=1")
        assert status == 504, (status, err)
        assert expect(api, "GET", "/v1/vm")["removing"] == ["disk/slow"]
        expect(api, "POST", "/v1/vm/resume")
        run.wait_event("device-removed", 60, name="slow")
        assert expect(api, "GET", "/v1/vm")["removing"] == []
        assert qemu_state(qmp) == before

        # Another uid is refused by the socket's mode, and, past it, by SO_PEERCRED.
        os.chmod(run.tmp, 0o711)  # let the other uid reach the socket's folder
        assert as_other_uid(api) == "EACCES", "the 0600 socket let another uid connect"
        os.chmod(api, 0o666)
        assert as_other_uid(api) == 403, "a peer with another uid was not refused by SO_PEERCRED"
        qmp.close()
    print("ok: hotplug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
