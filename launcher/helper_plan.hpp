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
    std::string virtiofsd = "/usr/lib/qemu/virtiofsd";   // the same package, not in PATH
    std::string passt = "passt";                         // Debian's passt
};

// A value for a FUSE `-o` option: libfuse splits options at ',' and takes '\' as an escape, so
// both are escaped and a path can never add an option of its own.
std::string fuse_option_escape(std::string_view value);

// The longest path a unix socket can have (sockaddr_un's sun_path, less its NUL).
constexpr std::size_t max_socket_path = 107;

// One qemu-storage-daemon per storageDaemon disk, in spec order, exporting the disk's image as
// vhost-user-blk on a socket in `state_dir` (every -blockdev and -export argument JSON, the
// image format explicit); then one virtiofsd per filesystem, in its own namespaces, chrooted
// into the shared folder (read-only by a bind mount when the share is); then one passt per passt
// NIC, with its port forwards. Errc::launch when a socket path would be too long.
Result<std::vector<HelperSpec>> plan_helpers(const spec::VmSpec& spec, const std::string& state_dir,
                                             const HelperBinaries& binaries);

}  // namespace qshim::launcher::detail
