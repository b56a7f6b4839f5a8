// `qshim ctl console`: the guest's serial console through the API socket (GET /v1/vm/console,
// upgraded to a byte stream). On a terminal the terminal is raw and Ctrl-] detaches.
#pragma once

#include <string>

namespace qshim::cli {

// Runs until the client detaches (Ctrl-] or end of input), the VM ends, or the connection breaks.
// Returns ctl's exit code: 0 detached or ended, 1 refused by the API (its message printed),
// 3 unreachable.
int run_ctl_console(const std::string& socket_path);

}  // namespace qshim::cli
