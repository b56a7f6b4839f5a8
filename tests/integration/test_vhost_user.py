#!/usr/bin/env python3
"""Disks served over vhost-user-blk, with the real QEMU and the real qemu-storage-daemon: one that
qshim runs as a helper (storageDaemon) and one an outside server serves (backend vhostUser). The
guest finds each at its planned address and reads what the test put into the image; its writes
reach the image. A helper's death is reported and the VM goes on; qshim killed takes its helper
with it; bad input starts nothing."""
import json
import os
import signal
import socket
import subprocess
import sys

from qshim_api import call, expect
from qshim_cli import qshim, qshim_bin
from qshim_guest import Qmp, give_to_qemu
from qshim_run import QshimRun, guest_spec, process_gone, wait_until
from test_scsi_media import GuestShell

MARK = "QSHIM-HOST-DATA-0123"
EXT_MARK = "QSHIM-EXTERNAL-4567"


def image(path, mark, size=16 << 20):
    with open(path, "wb") as f:
        f.write(mark.encode())
        f.truncate(size)
    give_to_qemu(path)
    return path


def vu_spec(run, data_disk, cmdline_extra="qshim.peek", name="vu", **extra):
    """The test guest with its root disk and `data_disk`."""
    root = {"name": "root", "path": str(run.tmp / "root.raw"), "format": "raw"}
    return guest_spec(run.tmp, name=name, cmdline_extra=cmdline_extra, grace=5,
                      disks=[root, data_disk], **extra)


def planned_address(spec, name):
    topo = json.loads(qshim("topology", spec, check=0).stdout)
    device = next(d for d in topo["devices"] if d["name"] == name)
    return device["address"], device["driver"]


def helper_folder(run, name="vu", disk="data"):
    return run.tmp / ".qshim" / name / f"{disk}.qsd"


def storage_daemon_disk():
    """qshim's own qemu-storage-daemon: started before QEMU, at the planned address, the image's
    bytes both ways, stopped after QEMU with its folder and socket."""
    with QshimRun() as run:
        data = image(run.tmp / "data.raw", MARK)
        spec = vu_spec(run, {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True},
                       cmdline_extra="qshim.peek qshim.scribble=vhost_user_blk", cpu={"cores": 2})
        address, model = planned_address(spec, "data")
        assert model == "vhost-user-blk-pci", model
        run.run(spec)
        report = run.console.wait_report(lambda r: any(d["pci"] == address for d in r.disks.values()),
                                         timeout=120)
        disk = next(name for name, d in report.disks.items() if d["pci"] == address)
        # qemu-storage-daemon 7.2 answers every vhost-user-blk disk's serial with this.
        assert report.disks[disk]["serial"] == "vhost_user_blk", report.disks
        run.console.wait_for(rf"QSHIM-GUEST: peek {disk} pci={address} head={MARK}", 5)
        run.console.wait_for(r"QSHIM-GUEST: scribbled vhost_user_blk", 30)
        started = run.event("helper-started")
        assert started["name"] == "qsd-data" and started["device"] == "disks[data]", started
        names = [e["event"] for e in run.events()]
        assert names.index("helper-started") < names.index("qemu-started"), names
        qsd = started["pid"]
        served = helper_folder(run) / "vhost-user-blk.sock"
        assert served.is_socket(), served
        if os.geteuid() == 0:  # sandboxed like QEMU: its uid, not root
            assert os.stat(f"/proc/{qsd}").st_uid == os.stat(f"/proc/{run.qemu_pid()}").st_uid == 107

        run.console.wait_ready(timeout=60)  # its power button works from here
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        assert process_gone(qsd), f"qemu-storage-daemon {qsd} outlived the VM"
        assert not helper_folder(run).exists(), "the helper's folder was left behind"
        # The guest's write went through the daemon into the image.
        with open(data, "rb") as f:
            assert f.read(15) == b"QSHIM-SCRIBBLED", "the guest's write did not reach the image"


def external_server():
    """backend vhostUser: a server the test runs; qshim only connects QEMU to it."""
    with QshimRun() as run:
        data = image(run.tmp / "ext.raw", EXT_MARK)
        path = run.tmp / "ext.sock"
        server = subprocess.Popen(
            ["qemu-storage-daemon",
             "--blockdev", json.dumps({"driver": "file", "filename": str(data), "node-name": "f"}),
             "--blockdev", json.dumps({"driver": "raw", "file": "f", "node-name": "b"}),
             "--export", json.dumps({"type": "vhost-user-blk", "id": "e", "node-name": "b",
                                     "addr": {"type": "unix", "path": str(path)}, "writable": True})],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: path.is_socket() or server.poll() is not None, 10, "the server's socket")
            assert server.poll() is None, server.stderr.read()
            give_to_qemu(path)  # QEMU's uid connects to it
            spec = vu_spec(run, {"name": "ext", "backend": {"type": "vhostUser", "socket": str(path)}},
                           name="ext")
            address, _ = planned_address(spec, "ext")
            run.run(spec)
            run.console.wait_for(rf"QSHIM-GUEST: peek vd[a-z] pci={address} head={EXT_MARK}", 120)
            assert not run.event("helper-started"), "an external server is not qshim's helper"
            run.console.wait_ready(timeout=60)
            run.proc.send_signal(signal.SIGTERM)
            assert run.wait_exit(30) == 0, run.stderr_text()
            assert server.poll() is None, "qshim stopped a server that is not its own"
        finally:
            server.kill()
            server.wait()


def helper_dies():
    """The daemon killed behind qshim's back: helper-exited names it, the VM runs on, and a stop
    still ends everything."""
    with QshimRun() as run:
        data = image(run.tmp / "data.raw", MARK)
        spec = vu_spec(run, {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True})
        run.run(spec)
        run.console.wait_for(rf"QSHIM-GUEST: peek vd[a-z] pci=\S+ head={MARK}", 120)
        qsd = run.event("helper-started")["pid"]
        qemu = run.qemu_pid()
        os.kill(qsd, signal.SIGKILL)
        died = run.wait_event("helper-exited", 10)
        assert died["name"] == "qsd-data" and died["device"] == "disks[data]", died
        assert died["signal"] == 9 and died["status"] == "killed by signal 9 (Killed)", died
        assert run.running() and not process_gone(qemu), "the VM did not go on without its disk"
        assert not run.event("exited"), run.events()
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait_exit(30)
        assert code in (0, 5), f"exit {code}: {run.stderr_text()}"  # the guest may hang on the dead disk
        assert process_gone(qemu)
        assert not helper_folder(run).exists()


def qshim_killed():
    """qshim killed with SIGKILL: the kernel ends its helper (parent-death signal), and the next
    run makes the helper's folder anew."""
    with QshimRun() as run:
        data = image(run.tmp / "data.raw", MARK)
        spec = vu_spec(run, {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True})
        run.run(spec)
        run.wait_event("running", 120)
        qsd, qemu = run.event("helper-started")["pid"], run.qemu_pid()
        run.proc.send_signal(signal.SIGKILL)
        run.wait_exit(10)
        wait_until(lambda: process_gone(qsd) and process_gone(qemu), 10, "helper and QEMU gone")
        assert helper_folder(run).exists()  # nobody was left to clean up
    # The folder such a run leaves, with its dead socket: the next run starts anyway.
    with QshimRun() as run:
        data = image(run.tmp / "data.raw", MARK)
        spec = vu_spec(run, {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True})
        stale = helper_folder(run)
        stale.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(stale / "vhost-user-blk.sock"))
        run.run(spec)
        run.console.wait_ready(timeout=120)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        assert not stale.exists()


def refused(run, spec, *expected, env=None):
    """qshim run exits 3 naming the problem; nothing was started and nothing is left behind."""
    r = subprocess.run([qshim_bin(), "run", "--events", str(run.tmp / "events.jsonl"), str(spec)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 3, f"exit {r.returncode}:\n{r.stderr}"
    for text in expected:
        assert text in r.stderr, f"{text!r} not in:\n{r.stderr}"
    events = [json.loads(line)["event"] for line in (run.tmp / "events.jsonl").read_text().splitlines()]
    assert "qemu-started" not in events, events
    assert not helper_folder(run).exists()
    return events


def bad_input():
    with QshimRun() as run:
        data = image(run.tmp / "data.raw", MARK)
        ext = {"name": "data", "backend": {"type": "vhostUser", "socket": str(run.tmp / "none.sock")}}
        refused(run, vu_spec(run, ext), f"disks[1] (data).backend.socket: {run.tmp}/none.sock: no such socket")

        ext["backend"]["socket"] = str(data)
        refused(run, vu_spec(run, ext), f"disks[1] (data).backend.socket: {data}: not a unix socket")

        qsd = {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True}
        env = dict(os.environ, PATH=str(run.tmp / "empty-path"))
        refused(run, vu_spec(run, qsd),
                "disks[1] (data).storageDaemon: qemu-storage-daemon: not found (install Debian's "
                "qemu-system-common)", env=env)

        # The daemon itself refuses: a raw image declared qcow2. Its own words reach the error.
        qsd["format"] = "qcow2"
        events = refused(run, vu_spec(run, qsd),
                         "qsd-data (disks[data]): it exited with status 1 before its socket",
                         "Image is not in qcow2 format")
        assert "helper-started" not in events, events


def hotplugged():
    """A storageDaemon disk hot-plugged through the API into a VM whose RAM is shared
    (memory.shared): qshim starts its daemon, then QEMU's connection, then the device; the guest
    reads the image there. Unplugged: the device, the connection and the daemon go."""
    with QshimRun() as run:
        api, qmp_path = run.tmp / "api.sock", run.tmp / "qmp.sock"
        data = image(run.tmp / "data.raw", MARK)
        spec = guest_spec(run.tmp, name="vu", cmdline_extra="qshim.cmd", grace=5,
                          memory={"size": "256Mi", "shared": True},
                          serial={"log": str(run.tmp / "console.log")})
        run.run(spec, "--api-socket", str(api), "--qmp-socket", str(qmp_path))
        run.console.wait_ready(timeout=120)
        qmp = Qmp(qmp_path)
        if os.geteuid() == 0:
            # qshim keeps CAP_CHOWN (bit 0) beside its usual five, to give a daemon started now
            # its folder (test_sandbox.py: 0x8000e2 without shared RAM).
            with open(f"/proc/{run.proc.pid}/status") as f:
                caps = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            assert caps["CapEff"] == "00000000008000e3", caps["CapEff"]
        chardevs = sorted(c["label"] for c in qmp.execute("query-chardev"))
        disk = expect(api, "POST", "/v1/vm/disks",
                      {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True}, 201)
        assert disk["driver"] == "vhost-user-blk-pci" and disk["address"] == "0000:02:00.0", disk
        started = run.wait_event("helper-started", 10, name="qsd-data")
        report = run.console.wait_report(lambda r: any(d["pci"] == disk["address"] for d in r.disks.values()),
                                         timeout=60)
        name = next(n for n, d in report.disks.items() if d["pci"] == disk["address"])
        shell = GuestShell(run, api)
        try:
            shell.ask(f"cd-read {name}", f"cd {name} head={MARK}")
        finally:
            shell.close()
        assert "vu.data" in [c["label"] for c in qmp.execute("query-chardev")]
        spec_disks = expect(api, "GET", "/v1/vm")["spec"]["disks"]
        assert any(d["name"] == "data" and d.get("storageDaemon") for d in spec_disks), spec_disks

        expect(api, "DELETE", "/v1/vm/disks/data")
        run.console.wait_report(lambda r: disk["address"] not in r.pci, timeout=60)
        assert process_gone(started["pid"]), "the hot-plugged disk's daemon outlived its unplug"
        assert not helper_folder(run).exists(), "the daemon's folder was left behind"
        assert sorted(c["label"] for c in qmp.execute("query-chardev")) == chardevs
        # Migration refuses a VM holding one (the live spec is what counts).
        expect(api, "POST", "/v1/vm/disks",
               {"name": "data", "path": str(data), "format": "raw", "storageDaemon": True}, 201)
        status, err = call(api, "POST", "/v1/vm/migrate", {"uri": f"unix:{run.tmp}/m.sock"})
        assert status == 501 and "vhost-user-blk" in err["error"]["message"], (status, err)
        qmp.close()
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        assert not helper_folder(run).exists()


def main():
    tests = (storage_daemon_disk, external_server, helper_dies, qshim_killed, bad_input, hotplugged)
    for test in tests:
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
