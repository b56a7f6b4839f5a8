#!/usr/bin/env python3
"""qshim ctl, the API's command-line client, against a running guest: every command it has, its
exit codes, and a shutdown through the API that ends qshim run with 0."""
import json
import os
import select
import subprocess
import sys

from qshim_cli import qshim, qshim_bin
from qshim_guest import give_to_qemu
from qshim_run import QshimRun, guest_spec


def main():
    with QshimRun() as run:
        api = run.tmp / "api.sock"
        run.run(guest_spec(run.tmp, name="ctl"), "--api-socket", str(api))
        run.console.wait_ready(timeout=90)
        ctl = ["ctl", "--api-socket", api]

        status = json.loads(qshim(*ctl, "status", check=0).stdout)
        assert status["state"] == "running" and status["name"] == "ctl", status
        topo = json.loads(qshim(*ctl, "topology", check=0).stdout)
        assert topo["machine"] == "pc-q35-7.2"
        # An unpinned VM: its vCPU thread is QEMU's, named by QEMU, and runs anywhere.
        cpus = json.loads(qshim(*ctl, "cpus", check=0).stdout)
        assert cpus["placement"] == "unpinned" and len(cpus["vcpus"]) == 1, cpus
        vcpu = cpus["vcpus"][0]
        assert vcpu["index"] == 0 and vcpu["name"].startswith("CPU 0/"), vcpu
        assert os.path.exists(f"/proc/{run.qemu_pid()}/task/{vcpu['threadId']}"), vcpu
        assert "planned" not in vcpu and cpus["emulator"], cpus

        data = run.tmp / "data.raw"
        with open(data, "wb") as f:
            f.truncate(1 << 20)
        give_to_qemu(data)
        added = json.loads(qshim(*ctl, "disk", "add", "--name", "data", "--path", data, "--format", "raw",
                                 "--serial", "CTL-1", check=0).stdout)
        run.console.wait_report(lambda r: (d := r.disk_by_serial("CTL-1")) and d["pci"] == added["address"], timeout=60)
        nic = json.loads(qshim(*ctl, "interface", "add", "--name", "n1", "--user", check=0).stdout)
        assert nic["address"].startswith("0000:4"), nic
        qshim(*ctl, "disk", "remove", "data", check=0)
        qshim(*ctl, "interface", "remove", "n1", check=0)
        run.console.wait_report(lambda r: not r.disk_by_serial("CTL-1"), timeout=60)

        err = qshim(*ctl, "disk", "remove", "nothere", check=1).stderr
        assert err.startswith("qshim ctl: ") and "nothere" in err, err
        err = qshim(*ctl, "disk", "add", "--name", "x", "--path", data, "--format", "vmdk", check=1).stderr
        assert "format" in err, err
        qshim(*ctl, "disk", "add", "--name", "x", check=2)                     # usage: missing flags
        qshim("ctl", "--api-socket", run.tmp / "absent.sock", "status", check=3)  # nothing listening
        assert qshim("ctl", "--help", check=0).stdout.startswith("Usage: qshim ctl")

        qshim(*ctl, "pause", check=0)
        assert json.loads(qshim(*ctl, "status", check=0).stdout)["state"] == "paused"
        qshim(*ctl, "resume", check=0)
        # The event stream, kept open: it sees the stop and ends by itself when the VM is gone.
        stream = subprocess.Popen([qshim_bin(), *map(str, ctl), "events"], stdout=subprocess.PIPE, text=True)
        try:
            # An idle VM says nothing: make it say something until the stream shows it is listening.
            for _ in range(50):
                qshim(*ctl, "pause", check=0)
                qshim(*ctl, "resume", check=0)
                if select.select([stream.stdout], [], [], 0.2)[0]:
                    break
            else:
                raise AssertionError("the event stream showed nothing")
            assert json.loads(stream.stdout.readline())["event"] in ("paused", "running")
        except BaseException:
            stream.kill()
            raise
        qshim(*ctl, "shutdown", check=0)
        assert run.wait_exit(30) == 0, run.events()
        out, _ = stream.communicate(timeout=10)
        streamed = [json.loads(line)["event"] for line in out.splitlines() if line]
        assert "shutdown-requested" in streamed and "guest-shutdown" in streamed, streamed
        assert run.event("exited")["reason"] == "stopped"
        assert not api.exists(), "the API socket was left behind"
    print("ok: ctl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
