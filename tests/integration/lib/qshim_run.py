"""Running `qshim run` on the test guest and reading its lifecycle events."""
import json
import os
import time
from pathlib import Path

from qshim_cli import guest_boot, qshim_bin, write_spec
from qshim_guest import Console, QemuProcess, give_to_qemu, guest_dir


def guest_spec(tmp, name="run", cmdline_extra="", grace=10, **extra):
    """A spec booting the test guest with one disk; console logged and served on a socket."""
    disk = Path(tmp) / "root.raw"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    give_to_qemu(disk)
    spec = {
        "name": name,
        "machine": {"accel": "tcg"},
        "memory": {"size": "256Mi"},
        "boot": guest_boot(guest_dir(), ("console=ttyS0 panic=-1 " + cmdline_extra).strip()),
        "disks": [{"name": "root", "path": str(disk), "format": "raw"}],
        "serial": {"log": str(Path(tmp) / "console.log"), "socket": str(Path(tmp) / "console.sock")},
        "lifecycle": {"gracePeriodSeconds": grace},
    }
    spec.update(extra)
    return write_spec(tmp, spec)


class QshimRun(QemuProcess):
    """`qshim run SPEC --events FILE` in a temp dir, with the guest console from the spec's log."""

    def run(self, spec_path, *args, prefix=()):
        """`prefix`: a command that execs the rest, e.g. one that joins a cgroup first."""
        self.events_path = self.tmp / "events.jsonl"
        argv = [*prefix, qshim_bin(), "run", "--events", str(self.events_path), *args,
                str(spec_path)]
        return self.start(argv, console_file="console.log")

    def events(self):
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]

    def event(self, name):
        return next((e for e in self.events() if e["event"] == name), None)

    def wait_event(self, event, timeout, **fields):
        """Waits with a deadline for the first lifecycle event of that name whose fields match (the
        events file is tailed like the console); returns it."""
        if getattr(self, "_events_tail", None) is None:
            self._events_tail = Console(self.events_path, until=lambda: not self.running())

        def found(text):
            for line in text.splitlines():
                if not line.endswith("}"):
                    continue  # a line still being written
                e = json.loads(line)
                if e["event"] == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            return None
        return self._events_tail.wait_for(found, timeout)

    def event_count(self):
        """A mark for wait_event(after=...): how many events there are now."""
        return len(self.events())

    def wait_new_event(self, event, after, timeout):
        """The first event of that name among those after the first `after` (event_count())."""
        if getattr(self, "_events_tail", None) is None:
            self._events_tail = Console(self.events_path, until=lambda: not self.running())

        def found(text):
            lines = [line for line in text.splitlines() if line.endswith("}")]
            return next((e for e in map(json.loads, lines[after:]) if e["event"] == event), None)
        return self._events_tail.wait_for(found, timeout)

    def __exit__(self, exc_type, exc, tb):
        if getattr(self, "_events_tail", None) is not None:
            self._events_tail.close()
        return super().__exit__(exc_type, exc, tb)

    def qemu_pid(self):
        started = self.event("qemu-started")
        assert started, f"no qemu-started event: {self.events()}"
        return started["pid"]


def process_gone(pid):
    """True when no process (not even a zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def proc_state(pid):
    """The state letter of /proc/PID/stat ("Z" for a zombie), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def wait_until(check, timeout, what):
    """Polls a host-side condition that has no event to wait on (process table, files)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not true within {timeout}s")
        time.sleep(0.01)
