// The CLI's documented exit codes (docs/cli.md); scripts and controllers branch on them.
#pragma once

namespace qshim::cli {

enum ExitCode : int {
    exit_ok = 0,
    exit_changed = 1,        // topology --diff: the guest ABI differs
    exit_invalid = 2,        // invalid spec, unreadable input or bad usage
    exit_launch_failed = 3,  // QEMU could not be started or rejected the plan
    exit_qemu_crashed = 4,   // QEMU died or was killed behind qshim's back
    exit_forced_stop = 5,    // the guest ignored the shutdown request and was stopped by force
    exit_qmp_lost = 6,       // qshim lost QEMU's QMP connection; QEMU ended after that
    exit_migrated = 7,       // the VM migrated away and runs on the target
    exit_internal = 70,      // a bug in qshim (EX_SOFTWARE)
};

}  // namespace qshim::cli
