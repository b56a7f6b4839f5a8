// Which helper processes a spec needs, and their command lines: a pure function of the spec,
// planned before anything starts (so a helper that cannot be planned starts nothing).
#pragma once

#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

#include "launcher/helper.hpp"

namespace qshim::launcher::detail {

struct HelperBinaries {
    std::string storage_daemon = "qemu-storage-daemon";  // Debian's qemu-system-common
};

// The longest path a unix socket can have (sockaddr_un's sun_path, less its NUL).
constexpr std::size_t max_socket_path = 107;

// One qemu-storage-daemon per storageDaemon disk, in spec order, exporting the disk's image as
// vhost-user-blk on a socket in `state_dir`. Every -blockdev and -export argument is JSON, the
// image format explicit. Errc::launch when a socket path would be too long.
Result<std::vector<HelperSpec>> plan_helpers(const spec::VmSpec& spec, const std::string& state_dir,
                                             const HelperBinaries& binaries);

}  // namespace qshim::launcher::detail
