#!/usr/bin/env python3
"""The guest's own view is the truth: boot 25 devices and check every one is where
`qshim topology` said, with nothing else on the bus."""
import json
import sys

from qshim_cli import PCI_IDS, Q35_BUILTIN, guest_boot, qshim, write_spec
from qshim_guest import QemuProcess, guest_dir


def build_spec(tmp, guest):
    disks = []
    for i in range(12):
        disks.append({"name": f"vd{i}", "path": f"vd{i}.raw", "format": "raw", "serial": f"VD-{i:02}"})
    for i in range(6):
        disks.append({"name": f"sd{i}", "path": f"sd{i}.raw", "format": "raw", "bus": "scsi", "serial": f"SD-{i:02}"})
    # Interleave so that list order differs from class order.
    disks.insert(3, disks.pop())
    for d in disks:
        with open(tmp / d["path"], "wb") as f:
            f.truncate(1 << 20)
    interfaces = [{"name": f"net{i}", "backend": {"type": "user"}} for i in range(5)]
    interfaces.append({"name": "pcie-nic", "model": "e1000e", "backend": {"type": "user"}})
    interfaces.append({"name": "legacy", "model": "e1000", "backend": {"type": "user"}})
    return {
        "name": "topo-check",
        "machine": {"accel": "tcg"},
        "memory": {"size": "256Mi"},
        "boot": guest_boot(guest),
        "disks": disks,
        "interfaces": interfaces,
        "hotplug": {"disks": 3, "interfaces": 2},
        "devices": {"rng": True, "balloon": True},
        "serial": {"log": "console.log"},
    }


def check_pci(report, topo):
    """Every predicted PCI function is present with the right ids, and nothing else."""
    expected = {c["address"]: c["model"] for c in topo["controllers"]}
    for d in topo["devices"]:
        if "unit" not in d or d["driver"] in ("scsi-hd", "scsi-cd"):
            expected.setdefault(d["address"], d["driver"] if "unit" not in d else "virtio-scsi-pci")
    seen = set(report.pci)
    missing = sorted(set(expected) - seen)
    extra = sorted(seen - set(expected) - Q35_BUILTIN)
    assert not missing, f"predicted but absent in the guest: {missing}"
    assert not extra, f"present in the guest but not predicted: {extra}"
    for address, driver in expected.items():
        vendor, device, _ = report.pci[address]
        assert (vendor, device) == PCI_IDS[driver], f"{address}: guest sees {vendor}:{device}, expected {driver}"
    return expected


def full_capacity(guest):
    """Every disk and NIC port of the layout reserved, plus every built-in device and the bridge:
    the port windows must leave the firmware enough room to boot and number all of them."""
    with QemuProcess() as vm:
        disk = vm.tmp / "root.raw"
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        spec = {
            "name": "full", "machine": {"accel": "tcg"}, "memory": {"size": "256Mi"}, "boot": guest_boot(guest),
            "disks": [{"name": "root", "path": str(disk), "format": "raw"},
                      {"name": "lun", "path": str(disk), "format": "raw", "bus": "scsi", "readOnly": True}],
            "interfaces": [{"name": "net0", "backend": {"type": "user"}},
                           {"name": "old", "model": "e1000", "backend": {"type": "user"}}],
            "hotplug": {"disks": 63, "interfaces": 31},
            "devices": {"rng": True, "balloon": True, "guestAgent": str(vm.tmp / "qga.sock")},
            "serial": {"log": "console.log"},
        }
        spec["disks"][0]["readOnly"] = True  # the same image twice: both read-only
        spec_path = write_spec(vm.tmp, spec)
        topo = json.loads(qshim("topology", spec_path, check=0).stdout)
        ports = [c for c in topo["controllers"] if c["model"] == "pcie-root-port"]
        assert len(ports) == 64 + 32 + 4 + 1, f"{len(ports)} root ports"
        vm.start(qshim("cmdline", spec_path, check=0).stdout.splitlines(), console_file="console.log")
        report = vm.console.wait_report(lambda r: len(r.disks) >= 2 and len(r.nics) >= 1, timeout=180)
        expected = check_pci(report, topo)
        assert report.disk_by_serial("root")["pci"] == "0000:01:00.0"
        assert report.nic_by_mac(topo["devices"][2]["mac"])["pci"] == "0000:41:00.0"
    print(f"ok: full capacity, {len(ports)} root ports and {len(expected)} PCI functions where predicted")


def main():
    guest = guest_dir()
    full_capacity(guest)
    with QemuProcess() as vm:
        spec_path = write_spec(vm.tmp, build_spec(vm.tmp, guest))
        topo = json.loads(qshim("topology", spec_path, check=0).stdout)
        argv = qshim("cmdline", spec_path, check=0).stdout.splitlines()
        devices = [d for d in topo["devices"]]
        assert sum(d["kind"] in ("disk", "interface") for d in devices) == 25, "the spec must hold 25 devices"

        vm.start(argv, console_file="console.log")
        report = vm.console.wait_report(lambda r: len(r.disks) >= 18 and len(r.nics) >= 5, timeout=120)

        expected = check_pci(report, topo)

        # Every disk serial and MAC exactly where predicted.
        for d in devices:
            if d["kind"] == "disk":
                seen_disk = report.disk_by_serial(d["serial"])
                assert seen_disk, f"disk {d['name']} (serial {d['serial']}) not seen by the guest"
                assert seen_disk["pci"] == d["address"], f"disk {d['name']}: guest {seen_disk['pci']}, predicted {d['address']}"
                if "unit" in d:
                    lun = int(seen_disk["hctl"].split(":")[3])
                    assert lun == d["unit"], f"disk {d['name']}: guest LUN {lun}, predicted {d['unit']}"
            elif d["kind"] == "interface" and d["driver"] == "virtio-net-pci":
                nic = report.nic_by_mac(d["mac"])
                assert nic, f"NIC {d['name']} (MAC {d['mac']}) not seen by the guest"
                assert nic["pci"] == d["address"], f"NIC {d['name']}: guest {nic['pci']}, predicted {d['address']}"
        assert len(report.disks) == 18, f"guest sees {len(report.disks)} disks, expected 18"
        assert len(report.nics) == 5, f"guest sees {len(report.nics)} virtio NICs, expected 5"
        # (The cloud kernel has no e1000/e1000e driver: those two are checked by PCI id above.)
    print(f"ok: {len(expected)} PCI functions, 18 disk serials, 5 MACs where predicted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
