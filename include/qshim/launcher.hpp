// Turning a spec and its topology into a QEMU command line (and, later, a supervised process).
#pragma once

#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <vector>

namespace qshim::launcher {

struct CommandOptions {
    std::string qemu_binary = "qemu-system-x86_64";
    std::optional<spec::Accel> accel;  // overrides the spec's machine.accel
    bool paused = false;               // -S: start with vCPUs stopped
    std::optional<int> qmp_fd;         // QMP over an inherited, connected socket
    std::string qmp_socket;            // (also) QMP on a listening unix socket at this path
    bool serial_stdio = false;         // the serial console on QEMU's stdout (logged too if
                                       // serial.log is set); excludes serial.socket
};

// The complete argv (argv[0] is the binary). Every -device, -blockdev, -netdev and -object
// argument is JSON, so no path or name can inject an option.
QSHIM_API Result<std::vector<std::string>> build_argv(const spec::VmSpec& spec,
                                                      const topology::Topology& topology,
                                                      const CommandOptions& options = {});

// Escapes a value for QEMU's key=value,... option syntax (used only where QEMU 7.2 has no JSON
// form: -chardev, -name): a comma is written twice.
QSHIM_API std::string qemu_opts_escape(std::string_view value);

// The block node names of a disk (format node on top of its file node); at most 31 characters,
// QEMU's limit, whatever the disk's name.
QSHIM_API std::string format_node_name(std::string_view disk_name);
QSHIM_API std::string file_node_name(std::string_view disk_name);
QSHIM_API std::string netdev_id(std::string_view interface_name);

}  // namespace qshim::launcher
