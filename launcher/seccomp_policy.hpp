// The system calls QEMU (and every helper qshim starts) is denied, and the filter built from them.
#pragma once

#include <linux/filter.h>

#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string_view>
#include <vector>

namespace qshim::launcher::detail {

struct DeniedSyscall {
    std::string_view name;    // as libseccomp names it
    std::string_view reason;  // why QEMU never needs it, or what it would give an attacker
};

// The reviewed deny-list, one entry per call (docs/security.md prints it).
const std::vector<DeniedSyscall>& denied_syscalls();

// clone/clone3 with namespace flags are denied by argument; these are the flags.
struct DeniedCloneFlag {
    unsigned long flag;
    std::string_view name;
};
const std::vector<DeniedCloneFlag>& denied_clone_flags();

// The classic BPF program of the deny-list for `mode` (empty for SeccompMode::off), built with
// libseccomp while qshim may still allocate; the child only hands it to the kernel.
Result<std::vector<sock_filter>> build_seccomp_filter(spec::SeccompMode mode);

}  // namespace qshim::launcher::detail
