#!/usr/bin/env python3
"""Dedicated CPUs on the real QEMU, in a cpuset cgroup the test makes (this machine has 2 CPUs):
the vCPU thread alone on one CPU, every other thread of QEMU (also ones created after boot by a
hot-plugged disk on an IOThread) on the other; the placement restored after the cpuset is rewritten
under the running VM; a spec wanting more CPUs than the cgroup has starts nothing. The guest sees
the NUMA nodes its spec declares (explicit, and auto on this one-node host), and guest RAM comes
from huge pages when asked."""
import os
import subprocess
from pathlib import Path

from qshim_api import expect
from qshim_cli import qshim_bin
from qshim_guest import give_to_qemu
from qshim_run import QshimRun, guest_spec, wait_until

V1 = Path("/sys/fs/cgroup/cpuset")
V2 = Path("/sys/fs/cgroup")


class CpusetCgroup:
    """A child cpuset cgroup holding CPUs `cpus` (v1, or v2 with the cpuset controller enabled);
    removed on exit once its processes are gone."""

    def __init__(self, cpus):
        self.v1 = (V1 / "cpuset.cpus").exists()
        parent = V1 if self.v1 else V2
        self.path = parent / f"qshim-test-{os.getpid()}"
        self.path.mkdir()
        if self.v1:
            # A v1 cpuset takes no task before it has both CPUs and memory nodes.
            (self.path / "cpuset.mems").write_text((parent / "cpuset.mems").read_text())
        else:
            (V2 / "cgroup.subtree_control").write_text("+cpuset")
        self.set_cpus(cpus)

    def set_cpus(self, cpus):
        (self.path / "cpuset.cpus").write_text(cpus)

    def prefix(self):
        """A command prefix that moves itself into the cgroup, then execs the rest."""
        procs = self.path / ("tasks" if self.v1 else "cgroup.procs")
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        procs = self.path / ("tasks" if self.v1 else "cgroup.procs")
        wait_until(lambda: not procs.read_text().strip(), 30, f"{self.path} empty")
        self.path.rmdir()


def thread_cpus(pid):
    """{tid: (name, Cpus_allowed_list)} for every thread of pid, from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:
            continue  # a worker thread that ended meanwhile
        out[int(tid)] = (fields["Name"], fields["Cpus_allowed_list"])
    return out


def check_placed(pid, vcpu_tid, vcpu_cpu, emulator):
    threads = thread_cpus(pid)
    assert threads[vcpu_tid][1] == str(vcpu_cpu), threads
    others = {tid: t for tid, t in threads.items() if tid != vcpu_tid}
    assert len(others) >= 2, threads  # main loop, IOThread, RCU, workers, ...
    wrong = {tid: t for tid, t in others.items() if t[1] != emulator}
    assert not wrong, f"threads off the emulator CPU {emulator}: {wrong}"
    return threads


def image(run, name):
    path = run.tmp / name
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    return str(give_to_qemu(path))


def dedicated_cpus_follow_the_cpuset():
    with CpusetCgroup("0-1") as cg, QshimRun() as run:
        api = run.tmp / "api.sock"
        spec = guest_spec(run.tmp, name="pinned",
                          cpu={"cores": 1, "dedicated": True, "isolateEmulatorThread": True},
                          iothreads=1, hotplug={"disks": 1, "interfaces": 0})
        run.run(spec, "--api-socket", str(api), prefix=cg.prefix())
        run.console.wait_ready(timeout=120)
        placed = run.wait_event("cpus-placed", 10, reason="start")
        assert placed["cpuset"] == "0-1" and len(placed["vcpus"]) == 1, placed
        vcpu_cpu, emulator = placed["vcpus"][0], placed["emulator"]
        assert emulator == str(1 - vcpu_cpu) and placed["iothreads"] == emulator, placed
        pid = run.qemu_pid()
        cpus = expect(api, "GET", "/v1/vm/cpus")
        assert cpus["placement"] == "placed" and cpus["cpuset"] == "0-1", cpus
        vcpu_tid = cpus["vcpus"][0]["threadId"]
        assert cpus["vcpus"][0]["cpus"] == str(vcpu_cpu) == cpus["vcpus"][0]["planned"], cpus
        assert cpus["iothreads"][0]["name"] == "IO io0", cpus
        assert {t["threadId"] for t in cpus["emulator"]} >= {pid}, cpus
        before = check_placed(pid, vcpu_tid, vcpu_cpu, emulator)

        # A disk hot-plugged onto the IOThread: QEMU's threads made after boot stay off the vCPU's
        # CPU too (they inherit the affinity QEMU was started with).
        disk = expect(api, "POST", "/v1/vm/disks",
                      {"name": "hot", "path": image(run, "hot.raw"), "format": "raw",
                       "serial": "HOT-IO", "iothread": 0}, 201)
        run.console.wait_report(lambda r: r.disk_by_serial("HOT-IO"), timeout=60)
        assert "0000:" in disk["address"], disk
        after = check_placed(pid, vcpu_tid, vcpu_cpu, emulator)
        print(f"threads at boot {len(before)}, after the hotplug {len(after)}")

        # The kubelet shrinks the cpuset to one CPU: it cannot hold a vCPU and the emulator, and
        # qshim says so (the kernel put every thread on the one CPU left).
        cg.set_cpus(str(vcpu_cpu))
        failed = run.wait_event("placement-failed", 10)
        assert failed["cpuset"] == str(vcpu_cpu) and "needs 2 host CPUs" in failed["message"], failed
        assert expect(api, "GET", "/v1/vm/cpus")["placement"] == "failed"
        # Given both CPUs back, the kernel resets every thread to 0-1; qshim places them again.
        cg.set_cpus("0-1")
        again = run.wait_event("cpus-placed", 10, reason="cpuset changed")
        assert again["cpuset"] == "0-1", again
        check_placed(pid, vcpu_tid, again["vcpus"][0], again["emulator"])
        assert expect(api, "GET", "/v1/vm/cpus")["placement"] == "placed"
        # The guest never noticed: it still reports, and stops cleanly.
        expect(api, "POST", "/v1/vm/shutdown", None, 202)
        assert run.wait_exit(60) == 0, run.stderr_text()


def too_many_cpus_start_nothing():
    with CpusetCgroup("0-1") as cg, QshimRun() as run:
        spec = guest_spec(run.tmp, name="toobig",
                          cpu={"cores": 2, "dedicated": True, "isolateEmulatorThread": True})
        run.run(spec, prefix=cg.prefix())
        code = run.wait_exit(60)
        assert code == 3, (code, run.stderr_text())  # not launched, as for any preflight check
        err = run.stderr_text()
        assert "cpu.dedicated" in err and "needs 3 host CPUs" in err and "cpuset 0-1" in err, err
        assert run.event("qemu-started") is None, run.events()


def guest_sees_its_numa_nodes():
    with QshimRun() as run:
        spec = guest_spec(run.tmp, name="numa", cpu={"cores": 2}, memory={"size": "384Mi"},
                          numa={"guestNodes": [{"vcpus": "0", "memory": "128Mi"},
                                               {"vcpus": "1", "memory": "256Mi"}]})
        run.run(spec)
        report = run.console.wait_report(lambda r: len(r.numa) == 2, timeout=120)
        assert report.numa["node0"]["cpus"] == "0" and report.numa["node1"]["cpus"] == "1", report.numa
        # MemTotal is the node's RAM less what the kernel keeps for itself (its image and early
        # allocations sit on node 0), so node 1 has clearly more than all of node 0.
        mem = {n: int(f["memory_kb"]) for n, f in report.numa.items()}
        assert 64 * 1024 < mem["node0"] <= 128 * 1024, mem
        assert 200 * 1024 < mem["node1"] <= 256 * 1024, mem


HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def hugepages_free():
    return int((HUGEPAGES / "free_hugepages").read_text())


def guest_ram_in_huge_pages():
    """memory.hugepages: 2Mi with prealloc takes all guest RAM from the host's huge pages before the
    guest runs; too few free pages are reported before launch. The test reserves the pages itself
    and gives them back."""
    reserved = int((HUGEPAGES / "nr_hugepages").read_text())
    try:
        (HUGEPAGES / "nr_hugepages").write_text(str(reserved + 128))
        got = int((HUGEPAGES / "nr_hugepages").read_text())
        assert got == reserved + 128, f"the kernel reserved {got - reserved} of 128 huge pages"
        with QshimRun() as run:
            spec = guest_spec(run.tmp, name="huge", numa={"guestNodes": "auto"},
                              cpu={"cores": 1, "pinning": {"vcpus": [0], "emulator": "0-1"}},
                              memory={"size": "256Mi", "hugepages": "2Mi", "prealloc": True})
            before = hugepages_free()
            run.run(spec)
            run.console.wait_ready(timeout=120)
            assert before - hugepages_free() == 128, (before, hugepages_free())
            report = run.console.wait_report(lambda r: r.numa, timeout=10)
            assert list(report.numa) == ["node0"] and report.numa["node0"]["cpus"] == "0", report.numa
        # Two pages more than the host has free: refused before launch, whatever else holds some.
        pages = hugepages_free() + 2
        with QshimRun() as run:
            spec = guest_spec(run.tmp, name="toohuge",
                              memory={"size": f"{2 * pages}Mi", "hugepages": "2Mi"})
            run.run(spec)
            assert run.wait_exit(60) == 3, run.stderr_text()
            assert f"needs {pages} huge pages of 2 MiB" in run.stderr_text(), run.stderr_text()
            assert run.event("qemu-started") is None, run.events()
    finally:
        (HUGEPAGES / "nr_hugepages").write_text(str(reserved))


def main():
    dedicated_cpus_follow_the_cpuset()
    too_many_cpus_start_nothing()
    guest_sees_its_numa_nodes()
    guest_ram_in_huge_pages()
    print("placement: ok")


if __name__ == "__main__":
    main()
