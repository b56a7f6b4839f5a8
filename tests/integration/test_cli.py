#!/usr/bin/env python3
"""The qshim CLI as users meet it: exit codes, one-line errors with positions, help, and the
topology commands end to end through files."""
import json
import re
import sys
import tempfile
from pathlib import Path

from qshim_cli import qshim, write_spec

BAD_SPEC = """\
name: Bad_Name
cpu: {cores: 0}
disks:
  - name: root
    path: root.img
    format: vmdk
    bootOrdr: 1
"""


def test_validate(tmp):
    good = write_spec(tmp, {"name": "ok", "disks": [{"name": "root", "path": "r.img", "format": "raw"}]})
    out = qshim("validate", good, check=0).stdout
    assert "valid" in out

    bad = tmp / "bad.yaml"
    bad.write_text(BAD_SPEC)
    r = qshim("validate", bad, check=2)
    lines = r.stderr.splitlines()
    expected = [
        (f"{bad}:1:7: name: ", "DNS label"),
        (f"{bad}:2:14: cpu.cores: ", "out of range"),
        (f"{bad}:6:13: disks[0].format: ", "must be one of raw, qcow2"),
        (f"{bad}:7:5: disks[0].bootOrdr: ", "did you mean 'bootOrder'"),
    ]
    for prefix, words in expected:
        assert any(l.startswith(prefix) and words in l for l in lines), f"missing {prefix}...{words} in:\n{r.stderr}"
    assert lines[-1].startswith("qshim: ") and "4 problems" in lines[-1], r.stderr

    qshim("validate", tmp / "missing.yaml", check=2)
    qshim("validate", check=2)
    qshim("validate", "--format", "toml", good, check=2)


def test_help():
    for args in (["--help"], ["validate", "--help"], ["topology", "--help"], ["cmdline", "--help"], ["run", "--help"],
                 ["help", "run"]):
        out = qshim(*args, check=0).stdout
        assert out.startswith("Usage: qshim"), f"qshim {' '.join(args)} does not teach:\n{out}"
        assert "Exit status" in out
    assert qshim(check=2).stdout.startswith("Usage: qshim")
    assert "unknown command" in qshim("frobnicate", check=2).stderr
    assert re.match(r"qshim \d+\.\d+\.\d+", qshim("--version", check=0).stdout)


def test_topology(tmp):
    spec = {"name": "t", "disks": [{"name": "a", "path": "a.img", "format": "raw"}],
            "interfaces": [{"name": "n", "backend": {"type": "user"}}]}
    old = write_spec(tmp, spec, "old.json")
    topo = json.loads(qshim("topology", old, check=0).stdout)
    assert topo["machine"] == "pc-q35-7.2" and topo["devices"][0]["address"] == "0000:01:00.0"
    assert qshim("topology", "--format", "yaml", old, check=0).stdout.startswith("topologyVersion: 1")

    # --resolve output is a spec that plans to the same topology.
    resolved = tmp / "resolved.yaml"
    resolved.write_text(qshim("topology", "--resolve", old, check=0).stdout)
    assert 'pciAddress: "0000:01:00.0"' in resolved.read_text()
    assert qshim("topology", resolved, check=0).stdout == qshim("topology", old, check=0).stdout

    # Appending is not an ABI change; reordering is.
    spec["disks"].append({"name": "b", "path": "b.img", "format": "raw"})
    grown = write_spec(tmp, spec, "grown.json")
    r = qshim("topology", "--diff", old, grown, check=0)
    assert "added: disk b" in r.stdout and "guest ABI unchanged" in r.stdout
    spec["disks"].reverse()
    reordered = write_spec(tmp, spec, "reordered.json")
    r = qshim("topology", "--diff", grown, reordered, check=1)
    assert "moved: disk a: 0000:01:00.0 -> 0000:02:00.0" in r.stdout, r.stdout
    qshim("topology", "--diff", old, check=2)


def test_cmdline(tmp):
    spec = write_spec(tmp, {"name": "c", "disks": [{"name": "a", "path": "x,y.img", "format": "qcow2"}]})
    argv = qshim("cmdline", "--accel", "tcg", spec, check=0).stdout.splitlines()
    blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    assert blockdevs[0]["filename"] == str(tmp / "x,y.img")
    assert blockdevs[1]["driver"] == "qcow2"
    assert argv[argv.index("-accel") + 1] == "tcg"
    qshim("cmdline", "--accel", "hvf", spec, check=2)


def main():
    with tempfile.TemporaryDirectory(prefix="qshim-cli-") as d:
        tmp = Path(d)
        test_validate(tmp)
        test_help()
        test_topology(tmp)
        test_cmdline(tmp)
    print("ok: cli")
    return 0


if __name__ == "__main__":
    sys.exit(main())
