#!/usr/bin/env python3
"""passt NICs with the real QEMU and Debian's passt, which qshim runs beside QEMU: the guest takes
a DHCP lease from passt, and passt holds the forwarded port on the pod's loopback. (A connection
through that forward does not reach the guest's server with Debian 12's passt on these machines:
docs/helpers.md, Known problems; the issue stays open for it.)

Everything runs in a network namespace the test makes (as a pod has its own): a veth pair with an
address and a default route that lead nowhere, so passt has an interface to copy and nothing the
guest sends can leave it. The guest only asks for DHCP (which passt answers itself) and listens;
it never connects outwards."""
import os
import signal
import socket
import subprocess
import sys

from qshim_cli import qshim_bin
from qshim_run import QshimRun, guest_spec, process_gone, wait_until

GUEST_PORT = 7777
HOST_PORT = 5555
# A pod's network namespace, in miniature: loopback, and an interface passt copies its addresses
# and route from. The peer has no address, so nothing answers beyond it.
POD_NETNS = ("ip link set lo up && ip link add pod0 type veth peer name pod1 && "
             "ip addr add 10.88.0.15/24 dev pod0 && ip link set pod0 up && ip link set pod1 up && "
             "ip route add default via 10.88.0.1 && exec \"$@\"")


def in_pod(pid, argv, **kwargs):
    """Runs argv in the network namespace of process `pid`."""
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], capture_output=True,
                          text=True, **kwargs)


def forward_bound(pid):
    """passt holds the forwarded port on the pod's loopback: a connection to it is accepted.
    (The bytes do not come back through it on these machines: see docs/helpers.md, Known problems.)"""
    client = ("import socket, sys\n"
              "socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).close()\n")
    r = in_pod(pid, ["python3", "-c", client, str(HOST_PORT)], timeout=30)
    assert r.returncode == 0, f"passt does not hold the forwarded port: {r.stderr}"


def dhcp_and_forward():
    with QshimRun() as run:
        spec = guest_spec(run.tmp, name="pt", grace=5,
                          cmdline_extra=f"qshim.dhcp qshim.listen={GUEST_PORT}",
                          interfaces=[{"name": "pod", "backend": {
                              "type": "passt",
                              "portForwards": [{"hostPort": HOST_PORT, "guestPort": GUEST_PORT}]}}])
        run.run(spec, prefix=["unshare", "--net", "--", "sh", "-c", POD_NETNS, "sh"])
        run.console.wait_for(r"QSHIM-GUEST: dhcp 10\.88\.0\.15/24", 120)
        run.console.wait_for(rf"QSHIM-GUEST: listening {GUEST_PORT}", 30)
        started = run.event("helper-started")
        assert started["name"] == "passt-pod" and started["device"] == "interfaces[pod]", started
        passt = started["pid"]
        forward_bound(run.proc.pid)
        # Only what the spec forwards: no other port of the pod reaches the guest.
        r = in_pod(run.proc.pid, ["python3", "-c",
                                  "import socket; socket.create_connection(('127.0.0.1', 5556), 2)"])
        assert r.returncode != 0, "a port the spec does not forward was open"
        run.console.wait_ready(timeout=60)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_exit(30) == 0, run.stderr_text()
        assert process_gone(passt), "passt outlived the VM"
        assert not (run.tmp / ".qshim" / "pt" / "pod.passt").exists()
        assert not run.event("helper-exited"), run.events()


def port_taken():
    """A forward whose host port is taken is refused before anything starts."""
    with QshimRun() as run:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            spec = guest_spec(run.tmp, name="pt", interfaces=[{"name": "pod", "backend": {
                "type": "passt", "portForwards": [{"hostPort": port, "guestPort": 22}]}}])
            r = subprocess.run([qshim_bin(), "run", "--events", str(run.tmp / "ev.jsonl"), str(spec)],
                               capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, r.stderr
        assert f"interfaces[0].backend.portForwards[0] (tcp 127.0.0.1:{port})" in r.stderr, r.stderr
        assert "helper-started" not in (run.tmp / "ev.jsonl").read_text()


def passt_missing():
    with QshimRun() as run:
        spec = guest_spec(run.tmp, name="pt", interfaces=[{"name": "pod", "backend": {"type": "passt"}}])
        env = dict(os.environ, PATH=str(run.tmp / "empty-path"))
        r = subprocess.run([qshim_bin(), "run", str(spec)], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 3, r.stderr
        assert "interfaces[0] (pod).backend passt: passt: not found (install Debian's passt)" in r.stderr, \
            r.stderr


def main():
    for test in (dhcp_and_forward, port_taken, passt_missing):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
