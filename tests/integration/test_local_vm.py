#!/usr/bin/env python3
"""Local VMs on the test guest: UEFI with a lasting variable store, the cloud-init seed as the guest
reads it, an ephemeral disk, and a restricted user network with a port forward."""
import os
import signal
import socket
import sys

from qshim_cli import guest_boot, qshim, write_spec
from qshim_guest import give_to_qemu, guest_dir
from qshim_run import QshimRun, wait_until


def base_spec(tmp, name, cmdline, **extra):
    spec = {
        "name": name,
        "machine": {"accel": "tcg"},
        "memory": {"size": "256Mi"},
        "boot": guest_boot(guest_dir(), "console=ttyS0 panic=-1 " + cmdline),
        "serial": {"log": str(tmp / "console.log")},
        "lifecycle": {"gracePeriodSeconds": 10},
    }
    spec.update(extra)
    return spec


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(run):
    run.proc.send_signal(signal.SIGTERM)
    code = run.wait_exit(30)
    assert code == 0, f"qshim exit {code}; events: {run.events()}\n{run.stderr_text()}"


def uefi_variable_store():
    """OVMF boots the guest; a variable the guest stores is there on the next run, from the state dir."""
    with QshimRun() as run:
        state = run.tmp / "state"
        for value in ("first", "second"):
            spec = write_spec(run.tmp, base_spec(run.tmp, "uefi", f"qshim.efivar={value}",
                                                 firmware={"type": "uefi"}))
            (run.tmp / "console.log").unlink(missing_ok=True)
            run.run(spec, "--state-dir", state)
            run.console.wait_for(r"QSHIM-GUEST: firmware efi secureboot=0", timeout=120)
            previous = "none" if value == "first" else "first"
            run.console.wait_for(rf"QSHIM-GUEST: efivar old={previous}\n", timeout=30)
            if value == "first":
                run.console.wait_for(r"QSHIM-GUEST: efivar stored first", timeout=30)
            run.console.wait_ready(timeout=60)
            stop(run)
            assert (state / "efi-vars.fd").is_file(), sorted(os.listdir(state))
            print(f"ok UEFI boot {value}: the guest read '{previous}' from the variable store")
        # BIOS is the default: the same guest without firmware sees no EFI.
        spec = write_spec(run.tmp, base_spec(run.tmp, "bios", ""))
        (run.tmp / "console.log").unlink(missing_ok=True)
        run.run(spec)
        run.console.wait_for(r"QSHIM-GUEST: firmware bios", timeout=90)
        run.console.wait_ready(timeout=60)
        stop(run)
        assert not (run.tmp / ".qshim").exists(), "a BIOS VM without seed or overlays needs no state"
        print("ok BIOS by default, and no state directory made for it")


def secure_boot():
    """secureBoot: OVMF's secure-boot build with Microsoft's keys: the guest sees secure boot on."""
    with QshimRun() as run:
        spec = write_spec(run.tmp, base_spec(run.tmp, "secure", "",
                                             firmware={"type": "uefi", "secureBoot": True}))
        run.run(spec)
        run.console.wait_for(r"QSHIM-GUEST: firmware efi secureboot=1", timeout=120)
        run.console.wait_ready(timeout=60)
        stop(run)
        state = run.tmp / ".qshim" / "secure"
        assert sorted(os.listdir(state)) == ["efi-vars-secboot.fd"], sorted(os.listdir(state))
        print("ok secure boot: the guest's SecureBoot variable is 1, its store efi-vars-secboot.fd")


def seed_ephemeral_forward():
    """The guest mounts the seed and reads qshim's meta-data; its writes to an ephemeral disk never
    reach the image; a forwarded port reaches its server; restrict keeps it from the host."""
    with QshimRun() as run:
        image = run.tmp / "base.raw"
        original = b"ORIGINAL-IMAGE-CONTENT" + bytes(4096)
        image.write_bytes(original + bytes((1 << 20) - len(original)))
        give_to_qemu(image)
        os.chmod(image, 0o444)  # read-only for everyone: the guest's writes go to the overlay
        host_port, host_only = free_port(), free_port()
        # A server on the host's loopback: a restricted guest must not reach it through 10.0.2.2.
        listener = socket.socket()
        listener.bind(("127.0.0.1", host_only))
        listener.listen()
        cmdline = (f"qshim.seed qshim.dhcp qshim.listen=2200 qshim.scribble=root "
                   f"qshim.probe=10.0.2.2:{host_only}")
        spec = write_spec(run.tmp, base_spec(
            run.tmp, "cloud", cmdline,
            cloudInit={"userData": "#cloud-config\nhostname: from-user-data\n",
                       "metaData": "custom-key: 42\n"},
            disks=[{"name": "root", "path": str(image), "format": "raw", "ephemeral": True}],
            interfaces=[{"name": "net0", "backend": {
                "type": "user", "restrict": True,
                "portForwards": [{"hostPort": host_port, "guestPort": 2200}]}}]))
        run.run(spec, "--api-socket", run.tmp / "api.sock")
        state = run.tmp / ".qshim" / "cloud"
        # The seed's last line, printed after its files.
        seed = run.console.wait_for(r"QSHIM-GUEST: seed (read-only|writable)", timeout=120)
        if os.geteuid() == 0:
            # qshim's, not QEMU's: a QEMU taken over cannot plant links where root writes.
            st = os.stat(state)
            assert st.st_uid == 0 and st.st_mode & 0o777 == 0o711, oct(st.st_mode)
            assert os.stat(state / "cidata.iso").st_uid == 107
        assert seed
        text = run.console.text()
        for line in ("QSHIM-GUEST: seed meta-data: custom-key: 42",
                     "QSHIM-GUEST: seed meta-data: local-hostname: cloud",
                     "QSHIM-GUEST: seed user-data: #cloud-config",
                     "QSHIM-GUEST: seed user-data: hostname: from-user-data",
                     "QSHIM-GUEST: seed read-only"):
            assert line in text, f"{line!r} not in the console:\n{text}"
        assert "QSHIM-GUEST: seed meta-data: instance-id: qshim-cloud-" in text, text
        print("ok the guest mounted the cidata seed and read qshim's meta-data and the user-data")
        run.console.wait_for(r"QSHIM-GUEST: scribbled root", timeout=30)
        assert (state / "root.overlay.qcow2").is_file() and (state / "cidata.iso").is_file()
        refused = qshim("ctl", "--api-socket", run.tmp / "api.sock", "migrate",
                        f"unix:{run.tmp / 'nowhere.sock'}", check=1)
        assert "disks[0] (root) is ephemeral" in refused.stderr, refused.stderr
        print("ok a VM with an ephemeral disk refuses to migrate")
        run.console.wait_for(r"QSHIM-GUEST: dhcp 10\.0\.2\.15/24", timeout=60)
        run.console.wait_for(r"QSHIM-GUEST: listening 2200", timeout=30)
        greeting = b""
        with socket.create_connection(("127.0.0.1", host_port), timeout=30) as c:
            while b"\n" not in greeting:
                chunk = c.recv(256)
                if not chunk:
                    break
                greeting += chunk
        assert greeting.startswith(b"QSHIM-GUEST-HELLO "), greeting
        print(f"ok 127.0.0.1:{host_port} reached the guest's server on port 2200")
        run.console.wait_for(rf"QSHIM-GUEST: probe 10\.0\.2\.2:{host_only} unanswered", timeout=30)
        listener.setblocking(False)
        try:
            listener.accept()
            raise AssertionError("the restricted guest reached the host's loopback server")
        except BlockingIOError:
            pass
        listener.close()
        print("ok restrict: the guest could not reach a server on the host")
        run.console.wait_ready(timeout=60)
        stop(run)
        assert image.read_bytes()[:len(original)] == original, "the guest's write reached the image"
        left = sorted(os.listdir(state))
        assert left == [], f"the run's files were left behind: {left}"
        print("ok the image is unchanged; overlay and seed are gone with the VM")


def port_in_use():
    """A forward whose host port is taken is refused before anything starts; no state is left."""
    with QshimRun() as run:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = write_spec(run.tmp, base_spec(
            run.tmp, "busy", "", cloudInit={},
            interfaces=[{"name": "net0", "backend": {
                "type": "user", "portForwards": [{"hostPort": port, "guestPort": 22}]}}]))
        run.run(spec)
        code = run.wait_exit(30)
        taken.close()
        assert code == 3, f"exit {code}: {run.stderr_text()}"
        err = run.stderr_text()
        assert f"interfaces[0].backend.portForwards[0] (tcp 127.0.0.1:{port}): is in use" in err, err
        assert not run.event("qemu-started"), run.events()
        state = run.tmp / ".qshim" / "busy"
        assert not state.exists() or os.listdir(state) == [], os.listdir(state)
        print("ok a taken host port is reported before QEMU starts")


def incoming_ephemeral():
    """A migration target with an ephemeral disk is refused before anything starts."""
    with QshimRun() as run:
        image = run.tmp / "base.raw"
        image.write_bytes(bytes(1 << 20))
        spec = write_spec(run.tmp, base_spec(
            run.tmp, "target", "",
            disks=[{"name": "root", "path": str(image), "format": "raw", "ephemeral": True}]))
        run.run(spec, "--incoming", f"unix:{run.tmp / 'in.sock'}")
        code = run.wait_exit(30)
        assert code == 3, f"exit {code}: {run.stderr_text()}"
        assert "disks[0] (root) is ephemeral" in run.stderr_text(), run.stderr_text()
        assert not run.event("qemu-started") and not (run.tmp / ".qshim").exists()
        print("ok run --incoming refuses a spec with an ephemeral disk, nothing made")


def main():
    tests = [uefi_variable_store, secure_boot, seed_ephemeral_forward, port_in_use,
             incoming_ephemeral]
    for t in tests:
        t()
    return 0


if __name__ == "__main__":
    sys.exit(main())
