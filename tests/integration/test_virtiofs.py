#!/usr/bin/env python3
"""virtio-fs with the real QEMU and Debian's virtiofsd, which qshim runs unprivileged in a user
namespace of its own: the guest mounts each share by its tag at its planned address, reads the
host's files, writes to a writable share and is refused on a read-only one (a path with a comma
in it cannot add an option to virtiofsd). virtiofsd's death is reported and the VM goes on; qshim
killed takes it along; bad input starts nothing."""
import json
import os
import signal
import subprocess
import sys

from qshim_cli import qshim, qshim_bin
from qshim_guest import give_to_qemu
from qshim_run import QshimRun, guest_spec, process_gone, wait_until

VIRTIO_FS = ("1af4", "105a")


def shares(run):
    """A writable share (with a comma in its path) and a read-only one, each with a file."""
    rw = run.tmp / "sh,are"
    ro = run.tmp / "conf"
    for folder, name, text in ((rw, "one.txt", "host-file-one"), (ro, "app.conf", "read-only-conf")):
        folder.mkdir()
        (folder / name).write_text(text + "\n")
        give_to_qemu(folder)
    return rw, ro


def fs_spec(run, filesystems, cmdline_extra="qshim.fs=share qshim.fs=config", name="vf"):
    return guest_spec(run.tmp, name=name, cmdline_extra=cmdline_extra, grace=5, filesystems=filesystems)


def helper_folder(run, share, name="vf"):
    return run.tmp / ".qshim" / name / f"{share}.virtiofsd"


def two_shares():
    with QshimRun() as run:
        rw, ro = shares(run)
        spec = fs_spec(run, [{"name": "share", "path": str(rw)},
                             {"name": "conf", "path": str(ro), "tag": "config", "readOnly": True}])
        topo = json.loads(qshim("topology", spec, check=0).stdout)
        addresses = {d["name"]: d["address"] for d in topo["devices"] if d["kind"] == "filesystem"}
        assert set(addresses) == {"share", "conf"}, topo["devices"]
        run.run(spec)
        report = run.console.wait_report(timeout=120)
        for name, address in addresses.items():
            assert report.pci.get(address, ())[:2] == VIRTIO_FS, f"{name} at {address}: {report.pci}"
        text = run.console.wait_for(r"QSHIM-GUEST: fs config write \w+", 60)
        console = run.console.text()
        for line in ("fs share one.txt: host-file-one", "fs share write ok",
                     "fs config app.conf: read-only-conf", "fs config write refused"):
            assert f"QSHIM-GUEST: {line}" in console, f"{line!r} not on the console:\n{console[-3000:]}"
        assert text
        assert (rw / "from-guest").read_text() == "written by the guest\n"
        assert not (ro / "from-guest").exists()
        started = [e for e in run.events() if e["event"] == "helper-started"]
        assert [e["name"] for e in started] == ["virtiofsd-share", "virtiofsd-conf"], started
        pids = [e["pid"] for e in started]
        if os.geteuid() == 0:  # QEMU's uid outside its namespace, no capabilities there
            for pid in pids:
                with open(f"/proc/{pid}/status") as f:
                    status = dict(line.split(":", 1) for line in f.read().splitlines())
                assert status["Uid"].split()[1] == "107", status["Uid"]
                assert int(status["CapEff"], 16) != 0  # inside its own namespace...
                assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        run.console.wait_ready(timeout=60)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        for pid in pids:
            assert process_gone(pid), f"virtiofsd {pid} outlived the VM"
        # virtiofsd ends as QEMU closes its socket: that is the VM's end, not a failed share.
        assert not run.event("helper-exited"), run.events()
        assert not helper_folder(run, "share").exists() and not helper_folder(run, "conf").exists()


def virtiofsd_dies():
    with QshimRun() as run:
        rw, _ = shares(run)
        run.run(fs_spec(run, [{"name": "share", "path": str(rw)}], cmdline_extra="qshim.fs=share"))
        run.console.wait_for(r"QSHIM-GUEST: fs share write ok", 120)
        pid = run.event("helper-started")["pid"]
        os.kill(pid, signal.SIGKILL)
        died = run.wait_event("helper-exited", 10)
        assert died["name"] == "virtiofsd-share" and died["device"] == "filesystems[share]", died
        assert run.running() and not run.event("exited"), "the VM did not go on without its share"
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) in (0, 5), run.stderr_text()
        assert not helper_folder(run, "share").exists()


def qshim_killed():
    with QshimRun() as run:
        rw, _ = shares(run)
        run.run(fs_spec(run, [{"name": "share", "path": str(rw)}], cmdline_extra=""))
        run.wait_event("running", 120)
        pid, qemu = run.event("helper-started")["pid"], run.qemu_pid()
        run.proc.send_signal(signal.SIGKILL)
        run.wait_exit(10)
        wait_until(lambda: process_gone(pid) and process_gone(qemu), 10, "virtiofsd and QEMU gone")


def bad_input():
    with QshimRun() as run:
        rw, _ = shares(run)
        afile = rw / "one.txt"
        cases = [
            ([{"name": "share", "path": str(afile)}], 3, f"filesystems[0] (share).path: {afile}: not a folder"),
            ([{"name": "share", "path": str(run.tmp / "none")}], 3,
             f"filesystems[0] (share).path: {run.tmp}/none: no such folder"),
            ([{"name": "share", "path": str(rw), "tag": "t" * 37}], 2,
             "filesystems[0].tag: is 37 bytes long; virtio-fs takes at most 36"),
            ([{"name": "a", "path": str(rw), "tag": "same"}, {"name": "b", "path": str(rw), "tag": "same"}], 2,
             "filesystems[1].tag: tag 'same' is also used by filesystems[0].tag"),
        ]
        for filesystems, code, expected in cases:
            spec = fs_spec(run, filesystems)
            r = subprocess.run([qshim_bin(), "run", "--events", str(run.tmp / "events.jsonl"), str(spec)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == code, f"exit {r.returncode}, expected {code}:\n{r.stderr}"
            assert expected in r.stderr, f"{expected!r} not in:\n{r.stderr}"
            events = (run.tmp / "events.jsonl").read_text() if (run.tmp / "events.jsonl").exists() else ""
            assert "qemu-started" not in events and "helper-started" not in events, events
            (run.tmp / "events.jsonl").unlink(missing_ok=True)


def main():
    for test in (two_shares, virtiofsd_dies, qshim_killed, bad_input):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
