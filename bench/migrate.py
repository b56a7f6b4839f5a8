#!/usr/bin/env python3
"""bench/migrate: live migration of a 512 MiB test guest over a unix socket on this machine, by
qshim (run --incoming, ctl migrate --wait) and by raw QEMU driven by hand over QMP with the same
capabilities and parameters (events and pause-before-switchover on the source, late-block-activate
on the target, no bandwidth limit, a 300 ms downtime limit), interleaved, RUNS times each, for a
guest that is idle and one that rewrites RAM at about DIRTY MiB/s (8 MiB at a time, evenly paced:
tests/guest/init, qshim.dirty). The hand-driven client waits for QEMU's MIGRATION events, as qshim
does, rather than polling query-migrate.

The dirtying guest's downtime is mostly the last dirty pages, so it varies with where the guest's
writing cycle is when the migration starts. Both sides therefore start the migration when the guest
says it has just written its whole region again ("dirty pass K" on its console): every page is
present, and the cycle is at the same point.

Figures per migration: QEMU's total-time and downtime, the bytes QEMU sent, the end-to-end time
(from the request to the guest running on the target: for qshim the `ctl migrate --wait` process,
which returns after the target said it runs the guest; for raw QEMU from `migrate` to the target's
`cont`), and the switchover pause: how long the paused guest waited for the client to answer
`pre-switchover`, by QEMU's own clock (its MIGRATION events' timestamps, pre-switchover to device;
qshim logs them with QSHIM_LOG=qmp:debug). It is the part of the downtime the client decides.

For qshim also the CPU time its own processes (both supervisors and the `ctl migrate` client) took
from the request to the answer, and that as a share of the migration's total time: the most that
qshim's work can have delayed QEMU's, were every millisecond of it taken from QEMU's. Last,
the dirtying guest once more with QEMU 7.2's own defaults (128 MiB/s bandwidth, 300 ms downtime)
for up to LIMIT seconds: where QEMU's defaults do not converge.

Usage: bench/migrate.py QSHIM_BINARY GUEST_DIR [RUNS] [DIRTY]"""
import json
import os
import random
import resource
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

repo = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(repo / "tests" / "integration" / "lib"), str(repo / "tests" / "integration")]

MEMORY = "512Mi"
LIMIT = 60  # seconds the defaults run gets to converge
DIRTY_PASS = re.compile(r"dirty pass \d+")


def start_point(console, dirty):
    """Waits, with a deadline, for the dirtying guest to finish its next whole pass."""
    if dirty:
        console.wait_for(DIRTY_PASS, timeout=120, since=console.mark())


def switchover_pause(events):
    """Milliseconds from QEMU's pre-switchover event to its device event (QEMU's timestamps);
    events: (status, seconds) of the source's MIGRATION events in order."""
    times = {}
    for status, at in events:
        times.setdefault(status, at)
    return (times["device"] - times["pre-switchover"]) * 1000


def logged_migration_events(stderr):
    """(status, seconds) of the MIGRATION events qshim logged at debug level."""
    return [(json.loads(m[1])["status"], float(m[2]))
            for m in re.finditer(r"event MIGRATION (\{.*?\}) at (\d+\.\d+)", stderr)]


def cpu_ms(pid):
    """CPU time a process's threads have run so far, in ms (the scheduler's own count, in ns:
    /proc's tick counts are 10 ms coarse); None once it has gone. A thread that ended is not
    counted: a qshim supervisor starts none during a migration."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e6
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_cpu_ms():
    """CPU time of this process's children that have been waited for, in ms."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def qshim_migration(dirty):
    from qshim_api import expect
    from qshim_cli import qshim
    from qshim_run import QshimRun, guest_spec
    from test_migrate import Target

    extra = f"qshim.dirty={dirty}" if dirty else ""
    with QshimRun() as src, Target() as dst:
        src.api = src.tmp / "api.sock"
        src.run(guest_spec(src.tmp, name="bench", cmdline_extra=extra, memory={"size": MEMORY}),
                "--api-socket", str(src.api))
        src.console.wait_ready(timeout=120)
        live = expect(src.api, "GET", "/v1/vm")["spec"]
        uri = dst.listen(live)
        start_point(src.console, dirty)
        supervisors = (src.proc.pid, dst.proc.pid)
        before = [cpu_ms(pid) for pid in supervisors] + [children_cpu_ms()]
        start = time.monotonic()
        out = qshim("ctl", "--api-socket", src.api, "migrate", uri, "--wait", check=0,
                    timeout=600).stdout
        wall = time.monotonic() - start
        # The source supervisor quits once it has said so: read it first.
        after = [cpu_ms(pid) for pid in supervisors] + [children_cpu_ms()]
        done = json.loads(out.splitlines()[-1])
        assert done["event"] == "migration-completed", out
        dst.wait_event("running", timeout=60)
        cpu = None if None in after else sum(a - b for a, b in zip(after, before))
        return {"total": done["totalMs"], "downtime": done["downtimeMs"],
                "bytes": done["transferredBytes"], "wall": wall * 1000, "cpu": cpu,
                "pause": switchover_pause(logged_migration_events(src.stderr_text()))}


def raw_argv(qshim_bin, spec_path, qmp):
    out = subprocess.run([qshim_bin, "cmdline", "--qmp-socket", str(qmp), str(spec_path)],
                         check=True, capture_output=True, text=True).stdout
    return [a for a in out.splitlines() if a]


def raw_migration(qshim_bin, dirty, defaults=False, limit=None):
    """Two QEMUs started from qshim's own argv (so the guest is the same), migrated by hand."""
    from qshim_cli import write_spec
    from qshim_guest import Qmp, QemuProcess
    from qshim_run import guest_spec

    extra = f"qshim.dirty={dirty}" if dirty else ""
    with QemuProcess() as src, QemuProcess() as dst:
        spec = json.loads(Path(guest_spec(src.tmp, name="bench", cmdline_extra=extra,
                                          memory={"size": MEMORY})).read_text())
        spec.pop("security", None)
        src_spec = write_spec(src.tmp, spec, "src.json")
        spec["serial"] = {"log": str(dst.tmp / "console.log")}
        dst_spec = write_spec(dst.tmp, spec, "dst.json")
        src.start(raw_argv(qshim_bin, src_spec, src.tmp / "qmp.sock"), console_file="console.log")
        dst.start(raw_argv(qshim_bin, dst_spec, dst.tmp / "qmp.sock") + ["-S", "-incoming", "defer"],
                  console_file="console.log")
        src.console.wait_ready(timeout=120)
        sq, dq = Qmp(src.tmp / "qmp.sock"), Qmp(dst.tmp / "qmp.sock")
        try:
            sock = str(dst.tmp / "in.sock")
            dq.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "events", "state": True},
                {"capability": "late-block-activate", "state": True}]})
            dq.execute("migrate-incoming", {"uri": f"unix:{sock}"})
            caps = [{"capability": "events", "state": True}]
            if not defaults:
                caps.append({"capability": "pause-before-switchover", "state": True})
                sq.execute("migrate-set-parameters", {"downtime-limit": 300,
                                                      "max-bandwidth": 1 << 62})
            sq.execute("migrate-set-capabilities", {"capabilities": caps})
            start_point(src.console, dirty)
            start = time.monotonic()
            sq.execute("migrate", {"uri": f"unix:{sock}"})
            if limit:
                # Only whether and when it converges matters here: polled, every 100 ms.
                while (info := sq.execute("query-migrate"))["status"] != "completed":
                    if info["status"] in ("failed", "cancelled"):
                        raise RuntimeError(f"raw migration {info['status']}: {info}")
                    if time.monotonic() - start > limit:
                        sq.execute("migrate_cancel")
                        return {"converged": False, "remaining": info["ram"]["remaining"],
                                "bytes": info["ram"]["transferred"]}
                    time.sleep(0.1)
            while not limit:
                status = sq.next_event("MIGRATION", timeout=600)["data"]["status"]
                if status == "pre-switchover":
                    sq.execute("migrate-continue", {"state": "pre-switchover"})
                elif status == "completed":
                    break
                elif status in ("failed", "cancelled"):
                    raise RuntimeError(f"raw migration {status}: {sq.execute('query-migrate')}")
            while dq.next_event("MIGRATION", timeout=60)["data"]["status"] != "completed":
                pass
            dq.execute("cont")
            wall = time.monotonic() - start
            # QEMU says completed a moment before it has computed the totals.
            for _ in range(100):
                info = sq.execute("query-migrate")
                if "downtime" in info:
                    break
                time.sleep(0.01)
            events = [(e["data"]["status"], e["timestamp"]["seconds"] +
                       e["timestamp"]["microseconds"] / 1e6)
                      for e in sq.events if e["event"] == "MIGRATION"]
            return {"total": info["total-time"], "downtime": info["downtime"],
                    "bytes": info["ram"]["transferred"], "wall": wall * 1000, "converged": True,
                    "pause": switchover_pause(events) if not defaults else None}
        finally:
            sq.close()
            dq.close()


def ratio_interval(ours, raw, resamples=2000):
    """A 95 % bootstrap interval of median(ours) / median(raw): these figures vary a lot from one
    migration to the next, and the interval says how far the ratio of medians can be trusted."""
    rng = random.Random(1)  # fixed: the same samples give the same interval
    ratios = sorted(statistics.median(rng.choices(ours, k=len(ours))) /
                    max(statistics.median(rng.choices(raw, k=len(raw))), 1e-9)
                    for _ in range(resamples))
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def rows(raw, ours, key):
    """The raw and qshim lines of one figure: min, median, max, and the ratio of medians with its
    interval on qshim's line."""
    digits = 1 if key == "pause" else 0  # the switchover pause is around a millisecond

    def line(name, values, extra=""):
        return (f"  {name:14} {min(values):12.{digits}f} {statistics.median(values):12.{digits}f}"
                f" {max(values):12.{digits}f}{extra}")
    r, o = [s[key] for s in raw], [s[key] for s in ours]
    low, high = ratio_interval(o, r)
    ratio = statistics.median(o) / max(statistics.median(r), 1e-9)
    return [line("raw QEMU", r), line("qshim", o, f" {ratio:9.3f}  [{low:.2f}, {high:.2f}]")]


def qshim_cpu(ours):
    """qshim's own CPU time per migration, and its share of the total time."""
    measured = [s for s in ours if s["cpu"] is not None]
    if not measured:
        return " qshim's own CPU: not measured (its source supervisor had always quit first)"
    cpu = [s["cpu"] for s in measured]
    share = [100 * s["cpu"] / max(s["total"], 1) for s in measured]
    return (f" qshim's own CPU (ms; both supervisors and ctl, request to answer; N={len(cpu)}): "
            f"min {min(cpu):.0f} median {statistics.median(cpu):.0f} max {max(cpu):.0f}; "
            f"share of total time: median {statistics.median(share):.1f} % max {max(share):.1f} %")


def main():
    qshim_bin = str(Path(sys.argv[1]).resolve())
    os.environ["QSHIM_BIN"] = qshim_bin
    os.environ["QSHIM_TEST_GUEST"] = str(Path(sys.argv[2]).resolve())
    os.environ["QSHIM_LOG"] = "qmp:debug"  # the source's MIGRATION events, with QEMU's times
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    dirty = int(sys.argv[4]) if len(sys.argv) > 4 else 192
    for label, rate in (("idle", 0), (f"dirtying ~{dirty} MiB/s", dirty)):
        raw, ours = [], []
        for i in range(runs):  # interleaved ABBA, so drift hits both sides alike
            order = (raw_migration, qshim_migration) if i % 2 == 0 else (qshim_migration,
                                                                            raw_migration)
            for f in order:
                (raw if f is raw_migration else ours).append(
                    f(qshim_bin, rate) if f is raw_migration else f(rate))
        print(f"{MEMORY} guest, {label}, unix socket, N={runs} each (min median max; ratio = "
              f"qshim median / raw median, with its 95 % bootstrap interval)")
        for key, unit in (("total", "ms"), ("downtime", "ms"), ("pause", "ms"), ("wall", "ms"),
                          ("bytes", "B")):
            print(f" {key} ({unit}){'':>5} {'min':>12} {'median':>12} {'max':>12} {'ratio':>9}"
                  f"  95 % interval")
            print("\n".join(rows(raw, ours, key)))
        print(qshim_cpu(ours))
    defaults = raw_migration(qshim_bin, dirty, defaults=True, limit=LIMIT)
    if defaults["converged"]:
        print(f"QEMU defaults, dirtying {dirty} MiB/s: converged in {defaults['total']} ms")
    else:
        print(f"QEMU defaults (128 MiB/s, 300 ms), dirtying {dirty} MiB/s: not converged after "
              f"{LIMIT} s ({defaults['remaining'] >> 20} MiB remaining, "
              f"{defaults['bytes'] >> 20} MiB sent); qshim's defaults converged in every run above")


if __name__ == "__main__":
    main()
