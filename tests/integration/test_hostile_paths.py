#!/usr/bin/env python3
"""Paths that break key=value option syntax reach QEMU intact: QEMU opens exactly the files named,
and nothing else. Checked with QEMU's own view (query-named-block-nodes, the files it creates)."""
import sys

from qshim_cli import qshim, write_spec
from qshim_guest import QemuProcess, Qmp

HOSTILE = [
    "a,file=shadow,b.raw",               # QemuOpts option injection
    'q"}, {"driver": "file".raw',        # JSON injection
    "line\nbreak.raw",                   # argv / line-protocol injection
    "spaces and = signs.raw",
]


def main():
    with QemuProcess() as vm:
        disks = []
        for i, name in enumerate(HOSTILE):
            path = vm.tmp / name
            with open(path, "wb") as f:
                f.truncate(1 << 20)
            disks.append({"name": f"d{i}", "path": str(path), "format": "raw"})
        log = vm.tmp / "console,path=evil.log"
        spec = write_spec(vm.tmp, {"name": "hostile", "machine": {"accel": "tcg"}, "disks": disks,
                                   "serial": {"log": str(log)}})
        qmp_path = vm.path("qmp.sock")
        # One argument per line: a newline inside a path is escaped in its JSON argument.
        argv = qshim("cmdline", "--paused", "--qmp-socket", qmp_path, spec, check=0).stdout.splitlines()
        vm.start(argv)
        qmp = Qmp(qmp_path)
        nodes = qmp.execute("query-named-block-nodes")
        files = sorted(n["file"] for n in nodes if n["drv"] == "file")
        assert files == sorted(str(vm.tmp / n) for n in HOSTILE), f"QEMU opened {files}"
        assert log.exists(), "the serial log was not created at its exact path"
        assert not (vm.tmp / "console").exists() and not (vm.tmp / "evil.log").exists()
        qmp.execute("quit")
        qmp.close()
    print("ok: QEMU opened exactly the named files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
