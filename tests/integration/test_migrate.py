#!/usr/bin/env python3
"""Live migration between two qshim on one machine, with the real guest (docs/migration.md).

The guest draws a random token at boot, keeps it in RAM only, and prints it with a rising counter.
One source VM lives through every way a migration can fail (a target that is another guest, its
QEMU or its qshim killed mid-stream, the relay between them killed, a cancel, a timeout, a SIGTERM to the target): each time the
same token keeps counting on the source. Then it migrates for real, through a byte relay over unix
sockets, on over TCP, and on over TCP with TLS: the target's console goes on with the same token (no reboot), and a disk
hot-plugged before the first migration is at the same address on the last target, which can unplug
it. A plain source and a TLS target refuse each other. Last, a SIGTERM to a source mid-migration
cancels the migration, then stops it."""
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from qshim_api import call, expect
from qshim_cli import qshim, write_spec
from qshim_guest import give_to_qemu, give_tree_to_qemu
from qshim_run import QshimRun, guest_spec, process_gone

TOKEN = re.compile(r"^QSHIM-GUEST: token ([0-9a-f]+) count (\d+)$", re.M)
SLOW = 1  # MiB/s: a 256 MiB guest takes minutes, so a test can act mid-stream


def tokens(console):
    return [(m.group(1), int(m.group(2))) for m in TOKEN.finditer(console.text())]


def keeps_counting(console, token, timeout=60):
    """The guest goes on with the same token and a higher count: the same boot, alive."""
    seen = tokens(console)
    assert seen and {t for t, _ in seen} == {token}, f"another token: the guest rebooted: {seen}"
    last = seen[-1][1]
    console.wait_for(lambda text: any(t == token and n > last for t, n in
                                      ((m.group(1), int(m.group(2))) for m in TOKEN.finditer(text))),
                     timeout)
    assert {t for t, _ in tokens(console)} == {token}


class Target(QshimRun):
    """qshim run --incoming from a live spec whose console log is the target's own."""

    def listen(self, live, address=None, tls=None, **changes):
        spec = copy.deepcopy(live)
        spec["serial"] = {"log": str(self.tmp / "console.log")}
        spec.update(changes)
        path = self.tmp / "live.json"
        path.write_text(json.dumps(spec))
        self.api = self.tmp / "api.sock"
        self.address = address or f"unix:{self.tmp / 'in.sock'}"
        extra = ["--tls-dir", str(tls)] if tls else []
        self.run(path, "--incoming", self.address, "--api-socket", str(self.api), *extra)
        self.wait_event("migration-listening", timeout=60)
        return self.address


def resumes(t, token, timeout=60):
    """The migrated guest's console goes on with the same token. If it stays silent, the failure
    says whether the guest still answers a line typed on its console (through the API): an answer
    means the guest runs and only its serial output stalled; none, that the guest does not run."""
    try:
        t.console.wait_for(TOKEN, timeout)
    except TimeoutError as e:
        raise AssertionError(f"{e}\nVM: {call(t.api, 'GET', '/v1/vm')[1].get('state')}; "
                             f"a line typed on the console: {console_probe(t.api)}") from e
    keeps_counting(t.console, token)


def console_probe(api, timeout=10):
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(timeout)
        c.connect(str(api))
        c.sendall(b"GET /v1/vm/console HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                  b"Upgrade: qshim-console\r\n\r\n")
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                got += c.recv(4096) or b"(closed)"
            if not got.startswith(b"HTTP/1.1 101"):
                return f"no console: {got[:200]!r}"
        except socket.timeout:
            return f"no console within {timeout}s: {got[:200]!r}"
        c.sendall(b"probe\n")
        answer = b""
        try:
            while b"probe" not in answer:
                answer += c.recv(4096) or b"(closed)"
        except socket.timeout:
            return f"no echo within {timeout}s, only {answer[-300:]!r}"
        return f"echoed: {answer[-300:]!r}"


def migrate(src, uri, **options):
    body = {"uri": uri, **options}
    return expect(src.api, "POST", "/v1/vm/migrate", body, status=202)


def streaming(src, timeout=60):
    """Waits until QEMU on the source is sending RAM."""
    deadline = time.monotonic() + timeout
    while True:
        m = expect(src.api, "GET", "/v1/vm/migration")
        if m["state"] == "active" and m["transferredBytes"] > 0:
            return m
        assert time.monotonic() < deadline, f"the migration did not get going: {m}"
        time.sleep(0.1)  # polling the API's own status, with a deadline


def failed_safely(src, mark, token, event="migration-failed", reason=None):
    e = src.wait_new_event(event, mark, timeout=60)
    if reason:
        assert re.search(reason, e["reason"]), e
    state = expect(src.api, "GET", "/v1/vm")["state"]
    assert state == "running", f"the source guest is {state} after {event}"
    keeps_counting(src.console, token)
    m = expect(src.api, "GET", "/v1/vm/migration")
    assert m["state"] in ("failed", "cancelled"), m
    return e


def target_gone(t, expect_code=None, timeout=60):
    code = t.wait_exit(timeout)
    if expect_code is not None:
        assert code == expect_code, f"target exit {code}, expected {expect_code}: {t.stderr_text()}"
    else:
        assert code != 0, f"target exited 0: {t.stderr_text()}"
    assert process_gone(t.qemu_pid()), "the target's QEMU outlived it"
    if t.address.startswith("unix:"):
        assert not Path(t.address[5:]).exists(), "the target left its socket behind"
    return code


def make_certificates(folder):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl, in
    the layout QEMU's tls-creds-x509 reads; one folder serves both ends here."""
    folder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca-cert.pem", "-days", "1",
        "-subj", "/CN=qshim test CA")
    for role, name, usage in (("server", "127.0.0.1", "serverAuth"), ("client", "qshim", "clientAuth")):
        (folder / f"{role}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        run("req", *ec, "-keyout", f"{role}-key.pem", "-out", f"{role}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{role}.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{role}-cert.pem", "-days", "1", "-extfile", f"{role}.ext")
    give_tree_to_qemu(folder)
    return folder


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mismatch(src, live, token):
    """A target that is another guest (more RAM) is refused on both sides before any RAM moves."""
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live, memory={"size": "384Mi"}))
        failed_safely(src, mark, token,
                      reason=r"memory\.size: 268435456 here, 402653184 there")
        assert expect(src.api, "GET", "/v1/vm/migration")["transferredBytes"] == 0
        target_gone(t, expect_code=3)
        assert "memory.size: 402653184 here, 268435456 there" in t.stderr_text(), t.stderr_text()


def image_missing(live):
    """A target that cannot open the shared image refuses before it listens: nothing moves."""
    with Target() as t:
        spec = copy.deepcopy(live)
        spec["disks"][0]["path"] = str(t.tmp / "absent.raw")
        spec["serial"] = {"log": str(t.tmp / "console.log")}
        path = write_spec(t.tmp, spec, "live.json")
        t.run(path, "--incoming", f"unix:{t.tmp / 'in.sock'}")
        assert t.wait_exit(60) == 3, t.stderr_text()
        assert "absent.raw" in t.stderr_text(), t.stderr_text()
        assert not t.event("migration-listening") and not (t.tmp / "in.sock").exists()


def target_qemu_killed(src, live, token):
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW)
        streaming(src)
        os.kill(t.qemu_pid(), signal.SIGKILL)
        failed_safely(src, mark, token)
        target_gone(t, expect_code=3)


def target_qshim_killed(src, live, token):
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW)
        streaming(src)
        t.proc.send_signal(signal.SIGKILL)  # its QEMU follows (parent-death signal)
        failed_safely(src, mark, token)
        assert t.wait_exit(30) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while not process_gone(t.qemu_pid()):
            assert time.monotonic() < deadline, "the target's QEMU outlived its qshim"
            time.sleep(0.05)  # nothing to wait on for another process's orphan


def relay_cut(src, live, token):
    """The connection is cut mid-stream (the node proxy between the pods dies)."""
    with Target() as t:
        inner = t.listen(live)
        relay_path = t.tmp / "relay.sock"
        relay = start_relay(relay_path, inner[5:])
        try:
            mark = src.event_count()
            migrate(src, f"unix:{relay_path}", maxBandwidthMiBps=SLOW)
            streaming(src)
            relay.kill()
            failed_safely(src, mark, token)
            target_gone(t, expect_code=3)
        finally:
            relay.kill()
            relay.wait()


def start_relay(listen_path, target_path):
    relay = subprocess.Popen([sys.executable, str(Path(__file__).parent / "lib" / "byte_relay.py"),
                              str(listen_path), str(target_path)], stdout=subprocess.PIPE, text=True)
    assert relay.stdout.readline().strip() == "ready"
    return relay


def cancelled(src, live, token):
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW)
        streaming(src)
        out = qshim("ctl", "--api-socket", src.api, "migrate-cancel", check=0).stdout
        assert json.loads(out)["state"] == "cancelling", out
        failed_safely(src, mark, token, event="migration-cancelled")
        target_gone(t, expect_code=3)
        # While nothing runs, a cancel has nothing to cancel.
        qshim("ctl", "--api-socket", src.api, "migrate-cancel", check=1)


def timed_out(src, live, token):
    """No convergence in time: the policy raises the downtime limit, then gives up."""
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW, completionTimeoutSeconds=2,
                progressTimeoutSeconds=1)
        e = failed_safely(src, mark, token, reason="did not converge")
        steps = [x["step"] for x in src.events()[mark:] if x["event"] == "migration-policy"]
        assert steps == ["downtime", "abort"], steps
        target_gone(t, expect_code=3)
        return e


def target_stopped(src, live, token):
    """SIGTERM to a target before the guest runs there cancels its side; the source keeps it."""
    with Target() as t:
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW)
        streaming(src)
        t.proc.send_signal(signal.SIGTERM)
        failed_safely(src, mark, token)
        target_gone(t, expect_code=0)  # a stop asked before the guest ran here: no failure


def refusals(src):
    """What is refused before anything is tried: a paused VM, post-copy, multifd, a bad URI."""
    expect(src.api, "POST", "/v1/vm/pause")
    status, body = call(src.api, "POST", "/v1/vm/migrate", {"uri": "unix:/nonexistent"})
    assert status == 409 and "paused" in body["error"]["message"], body
    expect(src.api, "POST", "/v1/vm/resume")
    for extra, word in (({"postcopy": True}, "userfaultfd"), ({"multifdChannels": 4}, "multifd")):
        status, body = call(src.api, "POST", "/v1/vm/migrate", {"uri": "unix:/nonexistent", **extra})
        assert status == 501 and word in body["error"]["message"], body
    status, body = call(src.api, "POST", "/v1/vm/migrate", {"uri": "exec:cat"})
    assert status == 400 and "unknown transport" in body["error"]["message"], body
    qshim("ctl", "--api-socket", src.api, "migrate", check=2)  # usage: no URI
    assert expect(src.api, "GET", "/v1/vm/migration")["state"] == "none"


def busy_refusals(src):
    """While a migration runs, a second one and a hotplug are refused with 409."""
    with Target() as t:
        live = expect(src.api, "GET", "/v1/vm")["spec"]
        mark = src.event_count()
        migrate(src, t.listen(live), maxBandwidthMiBps=SLOW)
        streaming(src)
        status, body = call(src.api, "POST", "/v1/vm/migrate", {"uri": "unix:/nonexistent"})
        assert status == 409, body
        status, body = call(src.api, "POST", "/v1/vm/disks",
                            {"name": "late", "path": "/dev/null", "format": "raw"})
        assert status == 409 and "migration" in body["error"]["message"], body
        expect(src.api, "DELETE", "/v1/vm/migration", status=202)
        src.wait_new_event("migration-cancelled", mark, timeout=60)
        target_gone(t, expect_code=3)


def main():
    with QshimRun() as src:
        src.api = src.tmp / "api.sock"
        src.run(guest_spec(src.tmp, name="mig", cmdline_extra="qshim.token"), "--api-socket",
                str(src.api))
        src.console.wait_ready(timeout=90)
        src.console.wait_for(TOKEN, 60)
        token = tokens(src.console)[0][0]

        data = src.tmp / "data.raw"
        with open(data, "wb") as f:
            f.truncate(1 << 20)
        give_to_qemu(data)
        placed = expect(src.api, "POST", "/v1/vm/disks",
                        {"name": "data", "path": str(data), "format": "raw", "serial": "MIG-DATA"},
                        status=201)
        src.console.wait_report(lambda r: (d := r.disk_by_serial("MIG-DATA")) and
                                d["pci"] == placed["address"], timeout=60)
        live = expect(src.api, "GET", "/v1/vm")["spec"]

        # The fingerprint is the CLI's too: the live spec's equals what the source sends.
        fp = json.loads(qshim("topology", "--fingerprint", "--format", "json",
                              write_spec(src.tmp, live, "live.json"), check=0).stdout)
        assert fp["facts"]["disks[data]"] == placed["address"], fp

        refusals(src)
        image_missing(live)
        mismatch(src, live, token)
        target_qemu_killed(src, live, token)
        target_qshim_killed(src, live, token)
        relay_cut(src, live, token)
        cancelled(src, live, token)
        timed_out(src, live, token)
        target_stopped(src, live, token)
        busy_refusals(src)

        # For real: through a relay between two unix sockets, as a node proxy would carry it.
        with Target() as t1:
            inner = t1.listen(live)
            relay_path = t1.tmp / "relay.sock"
            relay = start_relay(relay_path, inner[5:])
            try:
                out = qshim("ctl", "--api-socket", src.api, "migrate", f"unix:{relay_path}", "--wait",
                            check=0, timeout=120).stdout
                done = [json.loads(line) for line in out.splitlines()]
                assert done[-1]["event"] == "migration-completed", done
                assert done[-1]["downtimeMs"] >= 0 and done[-1]["totalMs"] > 0, done
                assert src.wait_exit(30) == 7, src.stderr_text()  # migrated
                assert process_gone(src.qemu_pid())
                t1.wait_event("running", timeout=60)
                t1.wait_event("migration-completed", timeout=60)
                resumes(t1, token)
                assert expect(t1.api, "GET", "/v1/vm")["state"] == "running"
            finally:
                relay.kill()
                relay.wait()

            # On over TCP, from the first target's own live spec.
            with Target() as t2:
                live1 = expect(t1.api, "GET", "/v1/vm")["spec"]
                port = free_port()
                t2.listen(live1, address=f"tcp:127.0.0.1:{port}")
                t1.wait_new_event("running", 0, timeout=5)
                mark = t1.event_count()
                migrate(t1, f"tcp:127.0.0.1:{port}")
                t1.wait_new_event("migration-completed", mark, timeout=120)
                assert t1.wait_exit(30) == 7, t1.stderr_text()
                t2.wait_event("running", timeout=60)
                resumes(t2, token)
                # The disk hot-plugged on the first source is where it was, and unplugs here.
                # (The guest reports only changes: a disk plugged here makes it report them all.)
                more = t2.tmp / "more.raw"
                with open(more, "wb") as f:
                    f.truncate(1 << 20)
                give_to_qemu(more)
                expect(t2.api, "POST", "/v1/vm/disks",
                       {"name": "more", "path": str(more), "format": "raw", "serial": "MIG-MORE"},
                       status=201)
                report = t2.console.wait_report(lambda r: r.disk_by_serial("MIG-MORE"), timeout=60)
                assert report.disk_by_serial("MIG-DATA")["pci"] == placed["address"], report
                topo = expect(t2.api, "GET", "/v1/vm/topology")
                assert any(d["name"] == "data" and d["address"] == placed["address"]
                           for d in topo["devices"]), topo
                expect(t2.api, "DELETE", "/v1/vm/disks/data")
                t2.console.wait_report(lambda r: not r.disk_by_serial("MIG-DATA"), timeout=60)

                # TLS: a plain source and a TLS target refuse each other before any byte of
                # QEMU's; with TLS on both sides, the VM moves over TCP, encrypted.
                tls = make_certificates(t2.tmp / "tls")
                live2 = expect(t2.api, "GET", "/v1/vm")["spec"]
                with Target() as plain:
                    port = free_port()
                    plain.listen(live2, address=f"tcp:127.0.0.1:{port}", tls=tls)
                    mark = t2.event_count()
                    migrate(t2, f"tcp:127.0.0.1:{port}")
                    failed_safely(t2, mark, token, reason=r"tls: off here, on there")
                    target_gone(plain, expect_code=3)
                # QEMU checks the peer: a client certificate from another CA is refused.
                stranger = make_certificates(t2.tmp / "stranger")
                with Target() as picky:
                    port = free_port()
                    picky.listen(live2, address=f"tcp:127.0.0.1:{port}", tls=tls)
                    mark = t2.event_count()
                    migrate(t2, f"tcp:127.0.0.1:{port}", tlsDir=str(stranger))
                    failed_safely(t2, mark, token)
                    target_gone(picky, expect_code=3)
                with Target() as t3:
                    port = free_port()
                    t3.listen(live2, address=f"tcp:127.0.0.1:{port}", tls=tls)
                    mark = t2.event_count()
                    migrate(t2, f"tcp:127.0.0.1:{port}", tlsDir=str(tls))
                    t2.wait_new_event("migration-completed", mark, timeout=120)
                    assert t2.wait_exit(30) == 7, t2.stderr_text()
                    t3.wait_event("running", timeout=60)
                    resumes(t3, token)

                    # SIGTERM to a source mid-migration: it is cancelled, then the VM stops.
                    with Target() as t4:
                        live3 = expect(t3.api, "GET", "/v1/vm")["spec"]
                        mark = t3.event_count()
                        migrate(t3, t4.listen(live3), maxBandwidthMiBps=SLOW)
                        streaming(t3)
                        t3.proc.send_signal(signal.SIGTERM)
                        t3.wait_new_event("migration-cancelled", mark, timeout=60)
                        assert t3.wait_exit(60) == 0, t3.stderr_text()
                        names = [e["event"] for e in t3.events()[mark:]]
                        assert names.index("migration-cancelled") < names.index("exited"), names
                        target_gone(t4, expect_code=3)
    print("migrate: ok")


if __name__ == "__main__":
    sys.exit(main())
