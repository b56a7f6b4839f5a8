#!/usr/bin/env python3
"""QEMU's sandbox: the ids, capabilities, no_new_privs, rlimits and seccomp filter qshim gives it,
seen from /proc of a booted guest's QEMU and from a probe started through the same launch path;
and the sandbox's refusals before launch (runAs root, files QEMU's uid cannot open, memlock)."""
import os
import subprocess
import sys

from qshim_cli import qshim, qshim_bin, write_spec
from qshim_guest import give_to_qemu
from qshim_run import QshimRun, guest_spec

PROBE = os.environ["QSHIM_SANDBOX_PROBE"]
ZERO_CAPS = "0000000000000000"


def status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def qemu_is_confined():
    """The QEMU of a booted guest: 107:107, no groups, no capabilities in any set, no_new_privs,
    a seccomp filter, and no core dumps."""
    with QshimRun() as run:
        run.run(guest_spec(run.tmp))
        run.console.wait_ready(timeout=90)
        pid = run.qemu_pid()
        s = status(pid)
        assert s["Uid"].split() == ["107"] * 4 and s["Gid"].split() == ["107"] * 4, s
        assert s["Groups"].strip() == "", s
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert s[cap] == ZERO_CAPS, (cap, s[cap])
        assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2", s
        with open(f"/proc/{pid}/limits") as f:
            core = next(line for line in f if line.startswith("Max core file size")).split()
        assert core[4:6] == ["0", "0"], core
        started = run.event("qemu-started")
        assert (started["uid"], started["gid"], started["seccomp"]) == (107, 107, "enforce"), started
        # qshim itself, once QEMU runs: no_new_privs, and only CAP_DAC_OVERRIDE (1), CAP_KILL (5),
        # CAP_SETGID (6), CAP_SETUID (7) and CAP_SYS_NICE (23) left, in every set.
        me = status(run.proc.pid)
        assert me["NoNewPrivs"] == "1", me
        for cap in ("CapPrm", "CapEff", "CapBnd"):
            assert me[cap] == "00000000008000e2", (cap, me[cap])


def run_probe(run, spec, prefix=()):
    """Runs `qshim run` with the probe in QEMU's place (after `prefix`, e.g. setpriv); returns
    qshim's exit code, the probe's report as a dict (empty if it never ran) and qshim's stderr."""
    report = run.tmp / "probe.txt"
    env = dict(os.environ, QSHIM_PROBE_REPORT=str(report))
    r = subprocess.run([*prefix, qshim_bin(), "run", "--qemu", PROBE, str(spec)], env=env,
                       capture_output=True, text=True, timeout=60)
    lines = report.read_text().splitlines() if report.exists() else []
    return r.returncode, dict(line.split("=", 1) for line in lines), r.stderr


def probe(run, security=None, prefix=(), owner=None):
    """The probe on the test guest's spec with `security`; qshim must report the probe's exit as
    a launch failure (3). `owner`: the (uid, gid) the test's files are given to, when QEMU runs
    as other ids than 107. Returns (report, stderr)."""
    extra = {"security": security} if security is not None else {}
    spec = guest_spec(run.tmp, **extra)
    if owner:
        for path in [run.tmp, *run.tmp.iterdir()]:
            os.chown(path, *owner)
    code, got, stderr = run_probe(run, spec, prefix)
    assert code == 3, (code, stderr)
    return got, stderr


def denied_calls_fail_with_eperm():
    with QshimRun() as run:
        got, _ = probe(run)
        assert got["status.Seccomp"] == "2" and got["status.NoNewPrivs"] == "1", got
        for call in ("keyctl", "personality", "unshare", "ptrace"):
            assert got[call] == "EPERM", (call, got)
        assert got["clone3"] == "ENOSYS", got  # glibc falls back to clone, whose flags are checked
        assert got["getpid"] == "0" and got["rlimit.core"] == "0" and got["done"] == "1", got


def filter_off_and_log_allow_them():
    """off: no filter of ours (NoNewPrivs and capabilities stay); log: allowed and logged."""
    for mode, seccomp in (("off", "0"), ("log", "2")):
        with QshimRun() as run:
            got, _ = probe(run, {"seccomp": mode})
            assert got["status.Seccomp"] == seccomp, (mode, got)
            assert got["status.NoNewPrivs"] == "1" and got["status.CapEff"] == ZERO_CAPS, got
            for call in ("keyctl", "personality", "ptrace"):
                assert got[call] == "0", (mode, call, got)


def kill_mode_kills():
    with QshimRun() as run:
        got, stderr = probe(run, {"seccomp": "kill"})
        assert "killed by signal 31" in stderr, stderr
        assert got.get("getpid") == "0" and "keyctl" not in got and "done" not in got, got


def run_as_other_ids():
    with QshimRun() as run:
        got, _ = probe(run, {"runAs": {"uid": 4242, "gid": 4343}}, owner=(4242, 4343))
        assert got["status.Uid"] == "4242 4242 4242 4242" and got["status.Gid"] == "4343 4343 4343 4343", got


def non_root_qshim_runs_qemu_as_itself():
    """Started as non-root (a pod's securityContext), QEMU runs as qshim's own ids; a runAs it
    cannot switch to is refused before launch."""
    as_107 = ["setpriv", "--reuid=107", "--regid=107", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all"]
    with QshimRun() as run:
        got, _ = probe(run, prefix=as_107)
        assert got["status.Uid"] == "107 107 107 107" and got["ptrace"] == "EPERM", got
        assert got["status.CapBnd"] == ZERO_CAPS, got
    with QshimRun() as run:
        spec = guest_spec(run.tmp, security={"runAs": {"uid": 4242, "gid": 4242}})
        code, got, stderr = run_probe(run, spec, prefix=as_107)
        assert code == 3 and not got, "the probe was started"
        assert "security.runAs: QEMU should run as 4242:4242, but qshim runs as 107:107 without CAP_SETUID" in stderr, stderr


def run_as_root_refused():
    with QshimRun() as run:
        spec = write_spec(run.tmp, {"name": "r", "security": {"runAs": {"uid": 0, "gid": 107}}})
        r = qshim("run", spec, check=2)
        assert "security.runAs.uid: must not be 0: QEMU never runs as root" in r.stderr, r.stderr


def unreadable_image_reported_before_launch():
    with QshimRun() as run:
        spec = guest_spec(run.tmp)
        disk = run.tmp / "root.raw"
        os.chown(disk, 0, 0)
        os.chmod(disk, 0o600)
        code, got, stderr = run_probe(run, spec)
        assert code == 3, stderr
        assert f"disks[0] (root): {disk}: not readable and writable by uid 107 (QEMU's; gid 107, no supplementary groups): Permission denied" in stderr, stderr
        assert not got, "QEMU was started"


def memlock_too_low_reported_before_launch():
    """A VFIO host device pins all guest RAM: RLIMIT_MEMLOCK must hold it (+1 GiB). Without
    CAP_SYS_RESOURCE qshim cannot raise its hard limit, and says what it needs."""
    with QshimRun() as run:
        spec = guest_spec(run.tmp, hostDevices=[{"name": "gpu", "hostAddress": "0000:fe:1f.7"}])
        code, got, stderr = run_probe(run, spec, prefix=[
            "setpriv", "--bounding-set=-sys_resource", "--inh-caps=-sys_resource",
            "prlimit", "--memlock=8388608:8388608"])
        assert code == 3, stderr
        needed = (256 << 20) + (1 << 30)
        assert f"RLIMIT_MEMLOCK: QEMU needs {needed} bytes of locked memory" in stderr, stderr
        assert "qshim's hard limit is 8388608" in stderr, stderr
        assert not got, "QEMU was started"


def main():
    for test in (qemu_is_confined, denied_calls_fail_with_eperm, filter_off_and_log_allow_them,
                 kill_mode_kills, run_as_other_ids, non_root_qshim_runs_qemu_as_itself,
                 run_as_root_refused, unreadable_image_reported_before_launch,
                 memlock_too_low_reported_before_launch):
        test()
        print(f"ok: {test.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
