// Whether QEMU, running as its own uid, will be able to open the files a spec names.
#pragma once

#include <qshim/error.hpp>
#include <string>
#include <vector>

#include "launcher/sandbox.hpp"

namespace qshim::launcher::detail {

// Who QEMU is: its ids, and whether they differ from qshim's (then a check must switch to them).
struct QemuIdentity {
    Ids ids;
    bool other_than_qshim = false;
};

struct AccessRequest {
    std::string path;
    int mode = 0;  // R_OK, W_OK, X_OK as access(2) takes them
};

// For each request, 0 or the errno access(2) gives as QEMU: with QEMU's uid and gid and no
// supplementary groups, as the sandbox will start it. ACLs and every path component's search
// permission are the kernel's to judge, which is why this asks the kernel (in a short-lived child
// that switches ids) rather than reading mode bits.
Result<std::vector<int>> access_as(const QemuIdentity& who,
                                   const std::vector<AccessRequest>& requests);

// "uid 107 (QEMU's; gid 107, no supplementary groups)" for messages.
std::string describe(const QemuIdentity& who);

}  // namespace qshim::launcher::detail
