"""Running the qshim binary under test, and writing specs for it."""
import json
import os
import subprocess
from pathlib import Path


def qshim_bin():
    path = os.environ.get("QSHIM_BIN")
    if not path or not Path(path).is_file():
        raise SystemExit("QSHIM_BIN must name the qshim binary under test (meson test sets it)")
    return str(Path(path).resolve())  # tests run processes in their own temp dirs


def qshim(*args, check=None, timeout=60):
    """Runs qshim; check=N asserts the exit code. Returns the CompletedProcess (text mode)."""
    r = subprocess.run([qshim_bin(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check is not None and r.returncode != check:
        raise AssertionError(f"qshim {' '.join(map(str, args))}: exit {r.returncode}, expected {check}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def write_spec(directory, spec, name="vm.json"):
    """Writes a spec (a dict) as JSON, which qshim reads like YAML; returns its path."""
    path = Path(directory) / name
    path.write_text(json.dumps(spec, indent=2))
    return path


def guest_boot(guest_dir, cmdline="console=ttyS0 panic=-1"):
    """The spec's boot section for the test guest."""
    return {"kernel": str(Path(guest_dir) / "vmlinuz"), "initrd": str(Path(guest_dir) / "initramfs.cpio.gz"),
            "cmdline": cmdline}


# PCI ids of what qshim places, to check the guest sees the right function at each address.
PCI_IDS = {
    "pcie-root-port": ("1b36", "000c"),
    "pcie-pci-bridge": ("1b36", "000e"),
    "virtio-net-pci": ("1af4", "1041"),
    "virtio-blk-pci": ("1af4", "1042"),
    "virtio-serial-pci": ("1af4", "1043"),
    "virtio-rng-pci": ("1af4", "1044"),
    "virtio-balloon-pci": ("1af4", "1045"),
    "virtio-scsi-pci": ("1af4", "1048"),
    "e1000": ("8086", "100e"),
    "e1000e": ("8086", "10d3"),
}

# Functions q35 always has: host bridge, LPC, AHCI, SMBus.
Q35_BUILTIN = {"0000:00:00.0", "0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"}
