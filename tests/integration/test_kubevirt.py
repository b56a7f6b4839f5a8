#!/usr/bin/env python3
"""A KubeVirt VirtualMachineInstance runs as-is: its volumes are mapped (--volume-root) onto the
test guest's kernel and onto scratch images, and the guest sees every disk and NIC where
`qshim topology vmi.yaml` puts it."""
import json
import signal
import sys

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
          disk:
            bus: virtio
        - name: logs
          serial: KV-LOGS
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
        kernelArgs: console=ttyS0 panic=-1 qshim.seed
        container:
          image: registry.example.com/test-guest:1
          kernelPath: /boot/vmlinuz
          initrdPath: /boot/initramfs.cpio.gz
    devices:
      disks:
        - name: drive
          disk: {}
  volumes:
    - name: drive
      cloudInitConfigDrive:
        userData: |
          #cloud-config
          drive-marker: 42
        networkDataBase64: eyJsaW5rcyI6IFtdfQo=
"""


def config_drive():
    """cloudInitConfigDrive: the guest finds OpenStack's files on a volume labelled config-2."""
    with QemuProcess() as proc:
        manifest = proc.tmp / "drive.yaml"
        manifest.write_text(CONFIG_DRIVE)
        give_to_qemu(proc.tmp)
        proc.start([qshim_bin(), "run", "--accel", "tcg", "--console",
                    "--volume-root", f"kernel-boot={guest_dir()}", manifest])
        proc.console.wait_for(r"QSHIM-GUEST: seed end", timeout=120)
        text = proc.console.text()
        for line in ("seed openstack/latest/user_data: drive-marker: 42",
                     'seed openstack/latest/network_data.json: {"links":[]}',
                     "seed label config-2 /dev/vd"):
            assert f"QSHIM-GUEST: {line}" in text, f"{line!r} not on the console:\n{text[-3000:]}"
        meta = next(l for l in text.splitlines() if "seed openstack/latest/meta_data.json:" in l)
        assert '"hostname":"kv-drive"' in meta and '"uuid":"qshim-kv-drive-' in meta, meta
        assert "seed label cidata" not in text, text[-2000:]
        proc.console.wait_ready(timeout=60)  # acpid runs: the power button is heard
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(60) == 0, (proc.tmp / "stderr.log").read_text()
        print("ok: a config drive, labelled config-2, in OpenStack's layout")


def main():
    config_drive()
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
