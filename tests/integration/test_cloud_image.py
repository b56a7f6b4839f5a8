#!/usr/bin/env python3
"""A real cloud image with real cloud-init: the Debian 12 image tests/cloud-image/build makes boots
through UEFI with an ephemeral root disk; cloud-init reads qshim's seed (a random hostname, a user
with a fresh SSH key); ssh through the forwarded port of a restricted user network reads the
hostname back. Also: examples/cloud.yaml is a valid spec."""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from qshim_cli import qshim, write_spec
from qshim_guest import give_to_qemu
from qshim_run import QshimRun

REPO = Path(__file__).resolve().parents[2]


def image_dir():
    path = os.environ.get("QSHIM_TEST_CLOUD_IMAGE")
    if not path or not (Path(path) / "root.img").is_file():
        raise SystemExit("QSHIM_TEST_CLOUD_IMAGE must name the folder tests/cloud-image/build made "
                         "(scripts/test sets it)")
    return Path(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh(key, port, *command):
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         "tester@127.0.0.1", *command],
        capture_output=True, text=True, timeout=120)


def cloud_init_over_ssh():
    images = image_dir()
    with QshimRun() as run:
        key = run.tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        hostname = f"qshim-{secrets.token_hex(4)}"
        port = free_port()
        user_data = "\n".join([
            "#cloud-config",
            f"hostname: {hostname}",
            "users:",
            "  - name: tester",
            "    shell: /bin/sh",
            "    ssh_authorized_keys:",
            f"      - {(key.parent / 'id_ed25519.pub').read_text().strip()}",
            # RSA host keys take ~20 s to make under TCG; one key type is enough for the test.
            "ssh_genkeytypes: [ed25519]",
            ""])
        spec = write_spec(run.tmp, {
            "name": "cloud-test",
            "machine": {"accel": "tcg"},
            "cpu": {"cores": 2},
            "memory": {"size": "1Gi"},
            "firmware": {"type": "uefi"},
            "boot": {"kernel": str(images / "vmlinuz"), "initrd": str(images / "initrd.img"),
                     "cmdline": "root=LABEL=qshim-root ro console=ttyS0"},
            "cloudInit": {"userData": user_data},
            # The cached image is never written: the guest's writes go to the overlay.
            "disks": [{"name": "root", "path": str(images / "root.img"), "format": "raw",
                       "ephemeral": True}],
            "interfaces": [{"name": "net0", "backend": {
                "type": "user", "restrict": True,
                "portForwards": [{"hostPort": port, "guestPort": 22}]}}],
            "serial": {"log": str(run.tmp / "console.log")},
            "lifecycle": {"gracePeriodSeconds": 60},
        })
        before = (images / "root.img").stat().st_mtime_ns
        run.run(spec)
        # cloud-init's last stage says so on the console once users, keys and sshd are set up.
        run.console.wait_for(r"Cloud-init v\. \S+ finished at", timeout=240)
        print("ok cloud-init ran to the end")
        r = ssh(key, port, "hostname; test -d /sys/firmware/efi && echo efi")
        assert r.returncode == 0, f"ssh failed ({r.returncode}): {r.stderr}"
        assert r.stdout.split() == [hostname, "efi"], r.stdout
        print(f"ok ssh -p {port} tester@127.0.0.1: hostname {hostname} from the seed, booted through EFI")
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait_exit(90)
        assert code == 0, f"qshim exit {code}: {run.stderr_text()[-2000:]}"
        state = run.tmp / ".qshim" / "cloud-test"
        assert sorted(os.listdir(state)) == ["efi-vars.fd"], sorted(os.listdir(state))
        assert (images / "root.img").stat().st_mtime_ns == before, "the cached image was written"
        print("ok the guest powered off; seed and overlay are gone, the image untouched")


def example_is_valid():
    """examples/cloud.yaml validates and lays out, given an image and user-data beside it."""
    with QshimRun() as run:
        shutil.copy(REPO / "examples" / "cloud.yaml", run.tmp / "vm.yaml")
        (run.tmp / "user-data").write_text("#cloud-config\n")
        (run.tmp / "debian-12-genericcloud-amd64.qcow2").write_bytes(b"")
        qshim("validate", run.tmp / "vm.yaml", check=0)
        argv = qshim("cmdline", run.tmp / "vm.yaml", check=0).stdout
        assert "pflash0=fw.code" in argv and "hostfwd" in argv and "cidata.iso" in argv, argv
        print("ok examples/cloud.yaml is valid: UEFI, seed, forward")


def main():
    example_is_valid()
    cloud_init_over_ssh()
    return 0


if __name__ == "__main__":
    sys.exit(main())
