#!/usr/bin/env python3
"""qshim as the entrypoint of a locked-down pod, in a real container runtime: rootful podman runs
examples/kubernetes/vm-pod.yaml (`podman kube play`) from the image examples/container/Containerfile
builds (tests/pod/build-image, run by scripts/test). The pod's qshim is PID 1, non-root, without
capabilities, with no_new_privs, a read-only root and namespaces of its own; the guest of
examples/kubernetes/vm.yaml boots; a disk is hot-plugged through the API socket on the shared
volume; `podman pod stop` ends the VM gracefully with exit 0."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qshim_api import expect
from qshim_guest import Console, give_tree_to_qemu, guest_dir

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ["QSHIM_TEST_POD_IMAGE"]        # set by scripts/test: the test fails without it
os.environ["CONTAINERS_CONF"] = os.environ["QSHIM_TEST_POD_CONF"]
POD = "vm1"
CONTAINER = f"{POD}-qshim"                          # podman kube play names it pod-container
ZERO_CAPS = "0000000000000000"


def podman(*args, check=True, timeout=120):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
    return r


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def pod_runs_the_vm_locked_down():
    tmp = Path(tempfile.mkdtemp(prefix="qshim-pod-"))
    vm = tmp / "vm"
    try:
        # The pod's volume: the example's spec, the test guest's kernel and initrd, the images.
        vm.mkdir()
        shutil.copy(REPO / "examples/kubernetes/vm.yaml", vm / "vm.yaml")
        for name in ("vmlinuz", "initramfs.cpio.gz"):
            shutil.copy(Path(guest_dir()) / name, vm / name)
        for name in ("root.raw", "data.raw"):
            with open(vm / name, "wb") as f:
                f.truncate(1 << 20)
        give_tree_to_qemu(vm)
        # The example pod, with this test's image and folder.
        pod = (REPO / "examples/kubernetes/vm-pod.yaml").read_text()
        assert "image: localhost/qshim:latest" in pod and "path: /srv/vm1" in pod
        pod = pod.replace("image: localhost/qshim:latest", f"image: {IMAGE}")
        pod = pod.replace("path: /srv/vm1", f"path: {vm}")
        (tmp / "pod.yaml").write_text(pod)

        podman("pod", "rm", "--force", "--ignore", POD)
        # No network at all: nothing a test starts may send traffic beyond this machine.
        podman("kube", "play", "--network", "none", str(tmp / "pod.yaml"))
        console = Console(vm / "console.log")
        try:
            console.wait_ready(timeout=120)
        except Exception:
            print(podman("logs", CONTAINER, check=False).stderr[-4000:], file=sys.stderr)
            raise

        # qshim: PID 1 of its own namespaces, non-root, no capabilities, no_new_privs, a filter.
        pid = int(podman("inspect", CONTAINER, "--format", "{{.State.Pid}}").stdout)
        s = status(pid)
        assert s["NSpid"].split()[-1] == "1", s["NSpid"]
        assert s["Uid"].split() == ["107"] * 4 and s["Gid"].split() == ["107"] * 4, s
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert s[cap] == ZERO_CAPS, (cap, s[cap])
        assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2", s
        for ns in ("mnt", "pid", "net", "ipc", "uts"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        readonly = podman("inspect", CONTAINER, "--format", "{{.HostConfig.ReadonlyRootfs}}").stdout
        assert readonly.strip() == "true", readonly
        # QEMU: qshim's child, the same uid, its own filter on top of the runtime's.
        (qemu,) = [c for c in children(pid) if "qemu" in Path(f"/proc/{c}/exe").resolve().name]
        q = status(qemu)
        assert q["Uid"].split() == ["107"] * 4 and q["CapEff"] == ZERO_CAPS, q
        assert q["NoNewPrivs"] == "1" and int(q["Seccomp_filters"]) > int(s["Seccomp_filters"]), q

        # A disk hot-plugged through the API socket on the shared volume; paths are the pod's.
        body = {"name": "data", "path": "/vm/data.raw", "format": "raw", "serial": "POD-DATA"}
        placed = expect(vm / "api.sock", "POST", "/v1/vm/disks", body, status=201, timeout=60)
        console.wait_report(lambda r: (d := r.disk_by_serial("POD-DATA")) and d["pci"] == placed["address"],
                            timeout=60)

        # The runtime's stop: SIGTERM to PID 1, the guest powers off, qshim exits 0.
        podman("pod", "stop", POD, timeout=90)
        code = podman("inspect", CONTAINER, "--format", "{{.State.ExitCode}}").stdout.strip()
        logs = podman("logs", CONTAINER).stdout
        assert code == "0", (code, logs[-2000:])
        assert '"event":"guest-shutdown"' in logs and '"reason":"stopped"' in logs, logs[-2000:]
        assert not (vm / "api.sock").exists(), "qshim left its API socket behind"
    finally:
        podman("pod", "rm", "--force", "--ignore", POD, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    pod_runs_the_vm_locked_down()
    print("ok: pod_runs_the_vm_locked_down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
