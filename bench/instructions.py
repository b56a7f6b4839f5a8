#!/usr/bin/env python3
"""bench/instructions: where qshim's own work goes in a start -> running -> forced stop, counted in
instructions by callgrind (stable on a noisy machine, unlike time). QEMU is not instrumented: this
is qshim's share only, the part that can make `qshim run` slower than QEMU driven by hand.

Usage: bench/instructions.py QSHIM_BINARY GUEST_DIR"""
import json
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch import spec  # noqa: E402

# Inclusive counts of these, in the order qshim does them. A coroutine's count covers its resumed
# parts (callgrind attributes each resumption to the actor function).
PHASES = [
    ("dynamic linking (ld.so relocations)", r"_dl_relocate_object"),
    ("loading the spec (yaml-cpp events, validation)", r"qshim::spec::load_spec\("),
    ("planning the topology", r"qshim::topology::plan\("),
    ("preflight (files, sockets, tap fds)", r"qshim::launcher::detail::preflight\("),
    ("building argv and the fd plan", r"qshim::launcher::build_command\("),
    ("spawning QEMU (fork, exec, pidfd)", r"qshim::launcher::detail::spawn\("),
    ("QMP: framing and parsing replies and events", r"qshim::qmp::Client::Impl::read_loop"),
    ("checking the plan against qom-list", r"qshim::Vm::Impl::verify_plan"),
    ("writing lifecycle events", r"qshim::cli::EventWriter::write\("),
]


def main():
    qshim, guest = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="qshim-instructions-") as d:
        tmp = Path(d)
        forced = spec(tmp, guest, 0, "forced.json")
        out = tmp / "callgrind.out"
        p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", qshim, "run",
                              "--events", "-", str(forced)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for line in p.stdout:
            if json.loads(line)["event"] == "running":
                break
        p.send_signal(signal.SIGTERM)
        p.stdout.read()
        if p.wait() != 0:
            print(f"qshim exited {p.returncode} under callgrind", file=sys.stderr)
            return 1
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
                                   capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"^([\d,]+) \(100\.0+%\)\s+PROGRAM TOTALS", annotated, re.M).group(1).replace(",", ""))
    print(f"qshim run, start -> running -> forced stop: {total / 1e6:.1f} M instructions in qshim itself")
    for label, pattern in PHASES:
        counts = [int(m.group(1).replace(",", "")) for m in
                  re.finditer(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*:" + pattern, annotated, re.M)]
        count = max(counts) if counts else 0
        print(f"  {label:48} {count / 1e6:7.2f} M  ({count / total * 100:5.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
