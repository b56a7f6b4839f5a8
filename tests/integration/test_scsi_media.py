#!/usr/bin/env python3
"""SCSI disks hot-plugged as LUNs of the virtio-scsi controller, and a cdrom's disc inserted and
ejected, through the REST API into a running guest. The guest's own view is the truth: the LUN
(hctl) and serial it sees, the bytes it reads off the disc, and its tray lock honoured."""
import subprocess
import sys

from qshim_api import call, expect
from qshim_cli import qshim_bin
from qshim_guest import Qmp
from qshim_run import QshimRun, guest_spec
from test_hotplug import image


class GuestShell:
    """Commands typed on the guest's console (the guest's qshim.cmd) through `qshim ctl console`;
    their answers are read from the console log."""

    def __init__(self, run, api):
        self.run = run
        self.client = subprocess.Popen([qshim_bin(), "ctl", "--api-socket", str(api), "console"],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)

    def ask(self, command, answer, timeout=30):
        """Types `command`; waits for the first guest line matching the regex `answer` after it."""
        mark = self.run.console.mark()
        if self.client.poll() is not None:
            raise RuntimeError(f"ctl console ended: {self.client.stderr.read().decode()}")
        self.client.stdin.write(command.encode() + b"\n")
        self.client.stdin.flush()
        return self.run.console.wait_for(r"QSHIM-GUEST: " + answer, timeout=timeout, since=mark)

    def close(self):
        if self.client.poll() is None:
            self.client.kill()
        self.client.wait()


def disc(run, name, text):
    """A raw disc image: `text` at its start, 64 KiB (whole 2048-byte CD sectors)."""
    return image(run, name, size=64 << 10, content=text.encode())


def nodes(qmp):
    return sorted(n["node-name"] for n in qmp.execute("query-named-block-nodes"))


def drive(qmp, qdev):
    return next(b for b in qmp.execute("query-block") if b.get("qdev") == qdev)


def scsi_luns(run, api, qmp, shell):
    # The lowest free LUN: 0, as the cdrom holds 5.
    one = expect(api, "POST", "/v1/vm/disks",
                 {"name": "lun-a", "bus": "scsi", "serial": "SCSI-A",
                  "path": image(run, "a.raw", content=b"QSHIM-LUN-A"), "format": "raw"}, 201)
    assert one["unit"] == 0 and one["driver"] == "scsi-hd", one
    two = expect(api, "POST", "/v1/vm/disks",
                 {"name": "lun-b", "bus": "scsi", "lun": 3, "serial": "SCSI-B",
                  "path": image(run, "b.raw", content=b"QSHIM-LUN-B"), "format": "raw"}, 201)
    assert two["unit"] == 3, two
    report = run.console.wait_report(
        lambda r: r.disk_by_serial("SCSI-A") and r.disk_by_serial("SCSI-B"), timeout=60)
    a, b = report.disk_by_serial("SCSI-A"), report.disk_by_serial("SCSI-B")
    assert a["hctl"].endswith(":0:0") and b["hctl"].endswith(":0:3"), report
    assert a["pci"] == one["address"] == report.disks["sr0"]["pci"], report
    shell.ask(f"cd-read {a['name']}", f"cd {a['name']} head=QSHIM-LUN-A")
    print("ok scsi disks plug as LUNs 0 and 3, and the guest reads them")

    status, err = call(api, "POST", "/v1/vm/disks",
                       {"name": "lun-c", "bus": "scsi", "lun": 5, "path": image(run, "c.raw"), "format": "raw"})
    assert status == 409 and "LUN 5 is taken by disk cd" in err["error"]["message"], (status, err)
    status, err = call(api, "POST", "/v1/vm/disks",
                       {"name": "lun-d", "bus": "sata", "path": image(run, "d.raw"), "format": "raw"})
    assert status == 400 and err["error"]["fields"][0]["path"] == "bus", (status, err)

    # Unplugged from the middle: the other keeps its LUN in the live spec, QEMU keeps no node.
    plugged = nodes(qmp)
    expect(api, "DELETE", "/v1/vm/disks/lun-a")
    run.console.wait_report(lambda r: not r.disk_by_serial("SCSI-A") and r.disk_by_serial("SCSI-B"), timeout=60)
    left = nodes(qmp)
    assert left == [n for n in plugged if not n.endswith(".lun-a")], (plugged, left)
    disks = {d["name"]: d for d in expect(api, "GET", "/v1/vm")["spec"]["disks"]}
    assert disks["lun-b"]["lun"] == 3 and "lun-a" not in disks, disks
    expect(api, "DELETE", "/v1/vm/disks/lun-b")
    run.console.wait_report(lambda r: not r.disk_by_serial("SCSI-B"), timeout=60)
    spec = expect(api, "GET", "/v1/vm")["spec"]
    assert spec["hotplug"]["scsi"] is True, spec["hotplug"]  # the controller stays
    print("ok scsi disks unplug; the other LUN stays where it was; no block node is left")


def cdrom_media(run, api, qmp, shell):
    shell.ask("cd-read sr0", "cd sr0 no-medium")
    before = nodes(qmp)
    media = "/v1/vm/disks/cd/media"
    answer = expect(api, "POST", media, {"path": disc(run, "a.iso", "QSHIM-DISC-A"), "format": "raw"})
    assert answer == {"name": "cd", "medium": {"path": str(run.tmp / "a.iso"), "format": "raw"}}, answer
    shell.ask("cd-read sr0", "cd sr0 head=QSHIM-DISC-A")
    assert run.wait_event("medium-changed", 10, name="cd")["path"] == str(run.tmp / "a.iso")
    print("ok a disc inserted into the empty drive is read by the guest")

    # The guest holds the drive (as a mounted disc does): Linux locks the tray, and qshim refuses
    # to take the disc away, changing nothing.
    shell.ask("cd-hold sr0", "cd sr0 held")
    assert drive(qmp, "cd")["locked"] is True
    holding = nodes(qmp)
    status, err = call(api, "POST", media, {"path": disc(run, "b.iso", "QSHIM-DISC-B"), "format": "raw"})
    assert status == 409 and "keeps the tray locked" in err["error"]["message"], (status, err)
    assert nodes(qmp) == holding, "a refused change left a node behind"
    assert drive(qmp, "cd")["tray_open"] is False
    status, err = call(api, "POST", media, {"eject": True})
    assert status == 409, (status, err)
    shell.ask("cd-read sr0", "cd sr0 head=QSHIM-DISC-A")
    print("ok a tray the guest has locked is not opened: 409, the disc stays")

    # force takes it regardless.
    expect(api, "POST", media, {"path": str(run.tmp / "b.iso"), "format": "raw", "force": True})
    shell.ask("cd-release", "cd released")
    shell.ask("cd-read sr0", "cd sr0 head=QSHIM-DISC-B")
    print("ok force changes the disc of a locked tray")

    # Bad requests change nothing.
    changed = nodes(qmp)
    status, err = call(api, "POST", media, {"path": str(run.tmp / "gone.iso"), "format": "raw"})
    assert status == 400 and err["error"]["fields"][0]["path"] == "path", (status, err)
    status, err = call(api, "POST", media, {"path": disc(run, "c.iso", "not-qcow2"), "format": "qcow2"})
    assert status == 400 and "cannot read" in err["error"]["message"], (status, err)
    status, err = call(api, "POST", "/v1/vm/disks/root/media", {"eject": True})
    assert status == 409 and "not a cdrom" in err["error"]["message"], (status, err)
    assert call(api, "POST", "/v1/vm/disks/none/media", {"eject": True})[0] == 404
    status, err = call(api, "POST", media, {"eject": True, "path": "/x"})
    assert status == 400 and err["error"]["fields"][0]["path"] == "eject", (status, err)
    status, err = call(api, "POST", media, {"path": "/x"})
    assert status == 400 and err["error"]["fields"][0]["path"] == "format", (status, err)
    assert nodes(qmp) == changed, "a refused change left a node behind"
    shell.ask("cd-read sr0", "cd sr0 head=QSHIM-DISC-B")
    print("ok bad media requests are refused and change nothing")

    answer = expect(api, "POST", media, {"eject": True})
    assert answer == {"name": "cd", "medium": None}, answer
    shell.ask("cd-read sr0", "cd sr0 no-medium")
    assert nodes(qmp) == before, (nodes(qmp), before)
    assert "inserted" not in drive(qmp, "cd") and drive(qmp, "cd")["tray_open"] is False
    cd = next(d for d in expect(api, "GET", "/v1/vm")["spec"]["disks"] if d["name"] == "cd")
    assert "path" not in cd, cd
    print("ok eject leaves the drive empty and closed, and QEMU without the disc's node")


def main():
    with QshimRun() as run:
        api, qmp_path = run.tmp / "api.sock", run.tmp / "qmp.sock"
        # No serial.socket: the console is qshim's, for `ctl console` to type on.
        spec = guest_spec(run.tmp, name="scsi", cmdline_extra="qshim.cmd", hotplug={"scsi": True},
                          serial={"log": str(run.tmp / "console.log")})
        run.run(spec, "--api-socket", str(api), "--qmp-socket", str(qmp_path))
        run.console.wait_ready(timeout=90)
        run.console.wait_for(r"QSHIM-GUEST: commands", timeout=5)
        qmp = Qmp(qmp_path)
        # An empty cdrom drive, hot-plugged at LUN 5.
        cd = expect(api, "POST", "/v1/vm/disks", {"name": "cd", "bus": "scsi", "device": "cdrom", "lun": 5}, 201)
        assert cd["unit"] == 5 and cd["driver"] == "scsi-cd", cd
        # (Linux reads no serial of a cdrom: the drive is known by its LUN.)
        report = run.console.wait_report(lambda r: "sr0" in r.disks, timeout=60)
        assert report.disks["sr0"]["hctl"].endswith(":0:0:5"), report
        shell = GuestShell(run, api)
        try:
            scsi_luns(run, api, qmp, shell)
            cdrom_media(run, api, qmp, shell)
        finally:
            shell.close()
        qmp.close()
    print("ok: scsi and media")
    return 0


if __name__ == "__main__":
    sys.exit(main())
