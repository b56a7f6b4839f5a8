#!/usr/bin/env python3
"""`qshim plan` against the real peak: VMs of several shapes (1-4 vCPUs, 256 MiB-2 GiB, few and
many devices) boot with all guest RAM preallocated; the pod's peak is QEMU's VmHWM plus qshim's.
The plan is never below it (that would be an OOM kill) and at most 10% + 32 MiB above it. Prints
the table docs/plan.md shows.

Under sanitizers (QSHIM_SANITIZED=1) qshim's own memory is ASan's, not a release build's: the
plan's qshim term is then left out of the comparison and so is qshim's measured memory."""
import json
import os
from pathlib import Path

from qshim_api import expect
from qshim_cli import qshim
from qshim_guest import give_to_qemu
from qshim_run import QshimRun, guest_spec

MiB = 1 << 20
SANITIZED = os.environ.get("QSHIM_SANITIZED") == "1"

# (name, vCPUs, memory, extra virtio disks, NICs, IOThreads, hotplug ports). "web" has the default
# hotplug ports (8 disks, 4 NICs) and fills them all after boot: the plan counts every port as a
# device to come, so that is the peak it must cover.
SHAPES = [
    ("small", 1, "256Mi", 0, 0, 0, {"disks": 0, "interfaces": 0}),
    ("web", 2, "512Mi", 0, 1, 0, None),
    ("busy", 4, "1Gi", 3, 2, 1, None),
    ("big", 2, "2Gi", 0, 0, 0, {"disks": 0, "interfaces": 0}),
    ("disks", 1, "256Mi", 15, 0, 0, {"disks": 2, "interfaces": 0}),
]
FILL_HOTPLUG = {"web"}


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def shape_spec(run, name, vcpus, memory, disks, nics, iothreads, hotplug):
    extra_disks = []
    for i in range(disks):
        path = run.tmp / f"d{i}.raw"
        with open(path, "wb") as f:
            f.truncate(1 << 20)
        give_to_qemu(path)
        disk = {"name": f"d{i}", "path": str(path), "format": "raw"}
        if iothreads and i == 0:
            disk["iothread"] = 0
        extra_disks.append(disk)
    extra = {"cpu": {"cores": vcpus}, "memory": {"size": memory, "prealloc": True},
             "interfaces": [{"name": f"n{i}", "backend": {"type": "user"}} for i in range(nics)],
             "iothreads": iothreads}
    if hotplug is not None:
        extra["hotplug"] = hotplug
    path = guest_spec(run.tmp, name=name, **extra)
    spec = json.loads(path.read_text())
    spec["disks"] += extra_disks
    path.write_text(json.dumps(spec))
    return path


def fill_hotplug_ports(run, api):
    """Plugs a disk into every free disk port and a NIC into every free NIC port; waits until the
    guest sees them all."""
    free = expect(api, "GET", "/v1/vm/topology")["hotplugPorts"]
    serials, macs = [], []
    for i, port in enumerate(p for p in free if p["class"] == "disks"):
        path = run.tmp / f"hot{i}.raw"
        with open(path, "wb") as f:
            f.truncate(1 << 20)
        give_to_qemu(path)
        serials.append(f"HOT-{i}")
        expect(api, "POST", "/v1/vm/disks",
               {"name": f"hot{i}", "path": str(path), "format": "raw", "serial": serials[-1]}, 201)
    for i, port in enumerate(p for p in free if p["class"] == "interfaces"):
        macs.append(f"52:54:00:ee:00:{i:02x}")
        expect(api, "POST", "/v1/vm/interfaces",
               {"name": f"hotnic{i}", "mac": macs[-1], "backend": {"type": "user"}}, 201)
    assert serials and macs, free
    run.console.wait_report(lambda r: all(r.disk_by_serial(s) for s in serials)
                            and all(r.nic_by_mac(m) for m in macs), timeout=120)


def measure(shape):
    with QshimRun() as run:
        spec = shape_spec(run, *shape)
        plan = json.loads(qshim("plan", "--json", spec, check=0).stdout)
        api = run.tmp / "api.sock"
        run.run(spec, "--api-socket", str(api))
        # The peak comes while the guest finds its devices; VmHWM keeps it.
        run.console.wait_ready(timeout=180)
        if shape[0] in FILL_HOTPLUG:
            fill_hotplug_ports(run, api)
        qemu = status_kib(run.qemu_pid(), "VmHWM") * 1024
        own = status_kib(run.proc.pid, "VmHWM") * 1024
        run.kill()
    qshim_term = next(t["bytes"] for t in plan["overhead"] if t["name"] == "qshim")
    planned = plan["memoryBytes"] - (qshim_term if SANITIZED else 0)
    measured = qemu + (0 if SANITIZED else own)
    return plan, planned, measured, qemu, own


def pod_manifest_has_the_plan():
    """examples/kubernetes/vm-pod.yaml carries exactly what `qshim plan --format k8s` says."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
    block = qshim("plan", "--format", "k8s", "--boot-size", "16Mi", examples / "vm.yaml",
                  check=0).stdout
    indented = "".join("      " + line + "\n" for line in block.splitlines())
    manifest = (examples / "vm-pod.yaml").read_text()
    assert indented in manifest, f"vm-pod.yaml's resources differ from the plan:\n{indented}"


def main():
    pod_manifest_has_the_plan()
    rows = []
    failures = []
    for shape in SHAPES:
        plan, planned, measured, qemu, own = measure(shape)
        name, vcpus, memory = shape[0], shape[1], shape[2]
        devices = 1 + shape[3] + shape[4]
        above = planned - measured
        rows.append(f"| {name} | {vcpus} | {memory} | {devices} | {qemu / MiB:.1f} | {own / MiB:.1f} "
                    f"| {planned / MiB:.0f} | {above / MiB:+.1f} ({above / measured:+.1%}) |")
        if planned < measured:
            failures.append(f"{name}: the plan {planned} is below the peak {measured}")
        if planned > measured * 1.10 + 32 * MiB:
            failures.append(f"{name}: the plan {planned} is more than 10% + 32 MiB above {measured}")
    print("| shape | vCPUs | RAM | disks+NICs | QEMU VmHWM MiB | qshim VmHWM MiB | plan MiB | plan - peak |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if SANITIZED:
        print("(sanitized build: qshim's memory and the plan's qshim term left out)")
    assert not failures, "\n".join(failures)
    print("plan: ok")


if __name__ == "__main__":
    main()
