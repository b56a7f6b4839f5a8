#!/usr/bin/env python3
"""A KubeVirt VirtualMachineInstance runs as-is: its volumes are mapped (--volume-root) onto the
test guest's kernel and onto scratch images, and the guest sees every disk and NIC where
`qshim topology vmi.yaml` puts it."""
import json
import re
import signal
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from qshim_cli import qshim, qshim_bin
from qshim_guest import QemuProcess, give_to_qemu, guest_dir

MANIFEST = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: kv-guest
  labels:
    app: test
spec:
  terminationGracePeriodSeconds: 10
  domain:
    cpu:
      model: qemu64
    resources:
      requests:
        memory: 256Mi
    firmware:
      uuid: 6A1B2C3D-0000-4000-8000-00000000CAFE
      serial: KV-SERIAL-7
      kernelBoot:
        kernelArgs: console=ttyS0 panic=-1
        container:
          image: registry.example.com/test-guest:1
          kernelPath: /boot/vmlinuz
          initrdPath: /boot/initramfs.cpio.gz
    devices:
      rng: {}
      disks:
        - name: root
          serial: KV-ROOT
          disk:
            bus: virtio
        - name: data
          serial: KV-DATA
          cache: none
          disk:
            bus: virtio
        - name: logs
          serial: KV-LOGS
          cache: writethrough
          disk:
            bus: scsi
        - name: scratch
          serial: KV-SCRATCH
          disk:
            bus: virtio
        - name: cloudinit
          disk:
            bus: virtio
      interfaces:
        - name: default
          macAddress: 02-00-00-00-4b-56
          masquerade: {}
  networks:
    - name: default
      pod: {}
  volumes:
    - name: root
      containerDisk:
        image: registry.example.com/root:1
    - name: data
      persistentVolumeClaim:
        claimName: data-pvc
    - name: logs
      hostDisk:
        path: HOSTDISK
        type: Disk
    - name: scratch
      emptyDisk:
        capacity: 64Mi
    - name: cloudinit
      cloudInitNoCloud:
        userData: |
          #cloud-config
          hostname: kv-guest
"""


def image(path, size=1 << 20):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


CONFIG_DRIVE = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: kv-drive
spec:
  domain:
    cpu:
      model: qemu64
    memory:
      guest: 256Mi
    firmware:
      kernelBoot:
        kernelArgs: console=ttyS0 panic=-1 qshim.seed qshim.isos qshim.label=appcfg
        container:
          image: registry.example.com/test-guest:1
          kernelPath: /boot/vmlinuz
          initrdPath: /boot/initramfs.cpio.gz
    devices:
      disks:
        - name: drive
          disk: {}
        - name: app-config
          disk:
            bus: virtio
  volumes:
    - name: app-config
      configMap:
        name: app-config
        volumeLabel: appcfg
    - name: token
      serviceAccount:
        serviceAccountName: default
    - name: drive
      cloudInitConfigDrive:
        userData: |
          #cloud-config
          drive-marker: 42
        networkDataBase64: eyJsaW5rcyI6IFtdfQo=
"""


def config_map(root):
    """A configMap as Kubernetes mounts it: each key a link into ..data, the current version."""
    version = root / "app-config" / "..2026_12_01_10_00_00.000000001"
    version.mkdir(parents=True)
    (version / "app.conf").write_text("color=blue\n")
    (version / "motd").write_text("hello from a configMap\n")
    (root / "app-config" / "..data").symlink_to(version.name)
    for key in ("app.conf", "motd"):
        (root / "app-config" / key).symlink_to(f"..data/{key}")


def config_drive():
    """cloudInitConfigDrive: the guest finds OpenStack's files on a volume labelled config-2. A
    configMap disk is an ISO of the configMap's files labelled by its volumeLabel. A volume that
    no disk names (the service account) gets a disk of its own, KubeVirt's default sata (which the
    test guest's cloud kernel, without AHCI, cannot see: its image is checked on the host)."""
    with QemuProcess() as proc:
        manifest = proc.tmp / "drive.yaml"
        manifest.write_text(CONFIG_DRIVE)
        config_map(proc.tmp / "config-maps")
        (proc.tmp / "service-account").mkdir()
        (proc.tmp / "service-account" / "token").write_text("token-marker-31\n")
        give_to_qemu(proc.tmp)
        proc.start([qshim_bin(), "run", "--accel", "tcg", "--console",
                    "--volume-root", f"kernel-boot={guest_dir()}",
                    "--volume-root", f"config-maps={proc.tmp / 'config-maps'}",
                    "--volume-root", f"service-account={proc.tmp / 'service-account'}",
                    manifest])
        proc.console.wait_for(r"QSHIM-GUEST: seed end", timeout=120)
        text = proc.console.text()
        for line in ("seed openstack/latest/user_data: drive-marker: 42",
                     'seed openstack/latest/network_data.json: {"links":[]}',
                     "seed label config-2 /dev/vd"):
            assert f"QSHIM-GUEST: {line}" in text, f"{line!r} not on the console:\n{text[-3000:]}"
        meta = next(l for l in text.splitlines() if "seed openstack/latest/meta_data.json:" in l)
        assert '"hostname":"kv-drive"' in meta and '"uuid":"qshim-kv-drive-' in meta, meta
        assert "seed label cidata" not in text, text[-2000:]
        proc.console.wait_for(r"QSHIM-GUEST: isos end", timeout=60)
        text = proc.console.text()
        label = re.search(r"QSHIM-GUEST: iso label appcfg (\w+)", text)
        assert label, f"no disk labelled appcfg:\n{text[-3000:]}"
        dev = label.group(1)
        for line in (f"iso {dev} app.conf: color=blue", f"iso {dev} motd: hello from a configMap"):
            assert f"QSHIM-GUEST: {line}" in text, f"{line!r} not on the console:\n{text[-3000:]}"
        assert f"iso {dev} ..data" not in text, text[-3000:]  # the mount's bookkeeping stays out
        # Made for this run in the state directory, gone after it.
        state = proc.tmp / ".qshim" / "kv-drive"
        assert (state / "app-config.folder.iso").is_file(), sorted(p.name for p in state.iterdir())
        token = (state / "token.folder.iso").read_bytes()
        assert b"token-marker-31" in token and "cfgdata".encode("utf-16-be") in token
        proc.console.wait_ready(timeout=60)  # acpid runs: the power button is heard
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(60) == 0, (proc.tmp / "stderr.log").read_text()
        assert not (state / "app-config.folder.iso").exists()
        assert not (state / "token.folder.iso").exists()
        # The disk KubeVirt's defaults add is not silent: qshim says which volume got one.
        err = (proc.tmp / "stderr.log").read_text()
        assert "spec.volumes[1] (token, line 30): no disk or filesystem names it" in err, err
        print("ok: a config drive labelled config-2 in OpenStack's layout; configMap, serviceAccount disks")


LIBVIRT = Path(__file__).resolve().parents[1] / "kubevirt" / "libvirt"


def libvirt_addresses(domain_xml):
    """What libvirt 9.0 wrote: KubeVirt alias (or element) -> PCI address, and drive units."""
    pci, units = {}, {}
    for dev in ET.parse(domain_xml).getroot().find("devices"):
        alias = dev.find("alias")
        name = alias.get("name") if alias is not None else dev.tag
        if dev.tag == "controller":
            name = f"controller {dev.get('type')}"
        a = dev.find("address")
        if a is None:
            continue
        if a.get("type") == "pci":
            pci[name] = "{:04x}:{:02x}:{:02x}.{:x}".format(
                *(int(a.get(k), 16) for k in ("domain", "bus", "slot", "function")))
        elif a.get("type") == "drive":
            units[name] = int(a.get("unit"))
    return pci, units


def pinned_from_libvirt():
    """A VMI moved from libvirt keeps every address libvirt's domain XML gives it: in qshim's
    topology, and in the guest's own view."""
    domain = LIBVIRT / "vmi-migrated.domain.xml"
    libvirt, units = libvirt_addresses(domain)
    with QemuProcess() as proc:
        tmp = proc.tmp
        image(tmp / "container-disks" / "disk_0.img")   # containerdisk, volume 0
        image(tmp / "container-disks" / "disk_4.img")   # installer, volume 4 (a cdrom)
        image(tmp / "vmi-disks" / "data" / "disk.img")
        image(tmp / "vmi-disks" / "scratch" / "disk.img")
        give_to_qemu(tmp)
        roots = ["--volume-root", f"container-disks={tmp / 'container-disks'}",
                 "--volume-root", f"vmi-disks={tmp / 'vmi-disks'}",
                 "--volume-root", f"kernel-boot={guest_dir()}"]
        out = qshim("convert", *roots, "--pin-from", domain, LIBVIRT / "vmi-migrated.yaml",
                    check=0)
        assert "controller usb 0 at 0000:04:00.0" in out.stderr, out.stderr
        assert "controller virtio-serial 0 at 0000:03:00.0" in out.stderr, out.stderr
        spec = tmp / "vm.yaml"
        spec.write_text(out.stdout)
        topology = json.loads(qshim("topology", spec, check=0).stdout)
        where = {d["name"]: d for d in topology["devices"]}
        expected = {"containerdisk": libvirt["ua-containerdisk"], "data": libvirt["ua-data"],
                    "cloud-init": libvirt["ua-cloudinitdisk"], "default": libvirt["ua-default"],
                    "scsi": libvirt["controller scsi"], "balloon": libvirt["memballoon"],
                    "rng": libvirt["rng"]}
        for name, address in expected.items():
            assert where[name]["address"] == address, (name, where[name], address)
        assert where["scratch"]["unit"] == units["ua-scratch"]
        assert where["installer"]["unit"] == units["ua-installer"] == 1

        proc.start([qshim_bin(), "run", "--accel", "tcg", "--console", spec])
        report = proc.console.wait_report(
            lambda r: all(r.disk_by_serial(s) for s in ("containerdisk", "DATA0001", "cidata",
                                                        "scratch")) and
            r.nic_by_mac("02:8a:1f:00:00:01"), timeout=180)
        seen = {"containerdisk": report.disk_by_serial("containerdisk")["pci"],
                "data": report.disk_by_serial("DATA0001")["pci"],
                "cloud-init": report.disk_by_serial("cidata")["pci"],
                "scsi": report.disk_by_serial("scratch")["pci"],
                "default": report.nic_by_mac("02:8a:1f:00:00:01")["pci"]}
        for name, address in seen.items():
            assert address == expected[name], f"{name}: guest sees {address}, libvirt had {expected[name]}"
        # virtio (1af4) balloon and rng, modern device ids, at libvirt's places.
        assert report.pci.get(expected["balloon"], (None,) * 3)[:2] == ("1af4", "1045"), report.pci
        assert report.pci.get(expected["rng"], (None,) * 3)[:2] == ("1af4", "1044"), report.pci
        print(f"ok: the guest sees every device where libvirt put it: {expected}")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(60) == 0, (tmp / "stderr.log").read_text()


def main():
    config_drive()
    pinned_from_libvirt()
    with QemuProcess() as proc:
        tmp = proc.tmp
        # The pod's folders, as virt-launcher lays them out, here under tmp.
        image(tmp / "container-disks" / "disk_0.img")      # volume 0: the container disk
        image(tmp / "vmi-disks" / "data" / "disk.img")      # a filesystem PVC
        logs = image(tmp / "host" / "logs.img")
        manifest = tmp / "vmi.yaml"
        manifest.write_text(MANIFEST.replace("HOSTDISK", str(logs)))
        give_to_qemu(tmp)
        roots = ["--volume-root", f"container-disks={tmp / 'container-disks'}",
                 "--volume-root", f"vmi-disks={tmp / 'vmi-disks'}",
                 "--volume-root", f"kernel-boot={guest_dir()}"]

        # Usage and input errors: each says what is wrong, exit 2, nothing started.
        bad = qshim("convert", "--volume-root", "images", manifest, check=2).stderr
        assert "--volume-root images: expected KIND=DIR" in bad, bad
        bad = qshim("run", "--volume-root", "tapes=/x", manifest, check=2).stderr
        assert "KIND one of container-disks" in bad, bad
        native = tmp / "native.yaml"
        native.write_text("name: plain\n")
        bad = qshim("convert", native, check=2).stderr
        assert "is a qshim spec already" in bad, bad
        refused = tmp / "refused.yaml"
        refused.write_text(MANIFEST.replace("      rng: {}", "      rng: {}\n      tpm: {}"))
        bad = qshim("run", "--accel", "tcg", *roots, refused, check=2).stderr
        assert "refused.yaml:26:7: spec.domain.devices.tpm: not supported by qshim" in bad, bad

        converted = qshim("convert", *roots, manifest, check=0).stdout
        assert "ephemeral: true" in converted, converted  # the container disk, under an overlay
        assert 'capacity: "64Mi"' in converted, converted  # the emptyDisk
        qshim("validate", *roots, manifest, check=0)
        topology = json.loads(qshim("topology", *roots, manifest, check=0).stdout)
        where = {d["name"]: d["address"] for d in topology["devices"]}

        proc.start([qshim_bin(), "run", "--accel", "tcg", "--console", *roots, manifest])
        report = proc.console.wait_report(
            lambda r: r.disk_by_serial("KV-ROOT") and r.disk_by_serial("KV-DATA") and
            r.disk_by_serial("KV-LOGS") and r.disk_by_serial("KV-SCRATCH") and
            r.disk_by_serial("cidata") and
            r.nic_by_mac("02:00:00:00:4b:56"), timeout=180)
        blank = tmp / ".qshim" / "kv-guest" / "scratch.blank.qcow2"  # the emptyDisk, this run's
        assert blank.is_file(), sorted(p.name for p in (tmp / ".qshim" / "kv-guest").iterdir())
        for name, serial in (("root", "KV-ROOT"), ("data", "KV-DATA"), ("scratch", "KV-SCRATCH"),
                             ("cloud-init", "cidata")):
            seen = report.disk_by_serial(serial)["pci"]
            assert seen == where[name], f"{name}: guest sees {seen}, topology says {where[name]}"
        # A scsi disk sits on the controller: its PCI function is the controller's.
        scsi = next(d for d in topology["devices"] if d["driver"] == "virtio-scsi-pci")
        assert report.disk_by_serial("KV-LOGS")["pci"] == scsi["address"], report
        nic = report.nic_by_mac("02:00:00:00:4b:56")["pci"]
        assert nic == where["default"], f"NIC: guest sees {nic}, topology says {where['default']}"
        print(f"ok: the VMI's disks and NIC are where qshim topology says: {where}")
        # firmware.uuid and serial are the guest's SMBIOS identity.
        proc.console.wait_for(
            r"QSHIM-GUEST: dmi uuid=6a1b2c3d-0000-4000-8000-00000000cafe serial=KV-SERIAL-7\n", 5)

        proc.proc.send_signal(signal.SIGTERM)
        code = proc.wait_exit(60)
        assert code == 0, f"qshim exit {code}\n{(tmp / 'stderr.log').read_text()}"
        # The container disk was never written: the guest's writes went to the overlay, now gone,
        # and the emptyDisk is gone with the VM.
        assert (tmp / "container-disks" / "disk_0.img").stat().st_size == 1 << 20
        assert not blank.exists() and not list((tmp / ".qshim" / "kv-guest").glob("*.qcow2"))
        print("ok: kubevirt VMI runs as-is")


if __name__ == "__main__":
    sys.exit(main())
