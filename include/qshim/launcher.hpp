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
    bool incoming = false;             // -incoming defer: a migration target (migrate-incoming)
    std::optional<int> qmp_fd;         // QMP over this connected socket (the caller's fd),
                                       // which QEMU inherits (see CommandLine::fds)
    std::string qmp_socket;            // (also) QMP on a listening unix socket at this path
    bool serial_stdio = false;         // the serial console on QEMU's stdout (logged too if
                                       // serial.log is set); excludes serial.socket
    std::optional<int> serial_fd;      // the serial console on this connected socket (the
                                       // caller's fd, inherited like qmp_fd; QEMU does not
                                       // write serial.log then: the caller does); excludes
                                       // serial_stdio, serial.socket
    // The VM's state directory (UEFI variables, cloud-init seed, ephemeral overlays); empty:
    // default_state_dir(spec). Only read when the spec needs one (needs_state_dir).
    std::string state_dir;
    std::string firmware_dir = "/usr/share/OVMF";  // Debian's ovmf package
    // What runs storageDaemon disks' exports (a name is searched in PATH): Debian's
    // qemu-system-common installs it.
    std::string storage_daemon_binary = "qemu-storage-daemon";
    // What serves filesystems (virtio-fs): Debian's qemu-system-common puts it outside PATH.
    std::string virtiofsd_binary = "/usr/lib/qemu/virtiofsd";
    std::string passt_binary = "passt";  // what serves passt NICs (Debian's passt)
};

// <spec folder>/.qshim/<VM name>: next to the spec, one folder per VM.
QSHIM_API std::string default_state_dir(const spec::VmSpec& spec);
// Whether the spec keeps files in a state directory: UEFI, cloudInit or an ephemeral disk.
QSHIM_API bool needs_state_dir(const spec::VmSpec& spec);

// A descriptor QEMU inherits: the caller's `source` becomes `target` in QEMU, the number its
// argv names.
struct InheritedFd {
    int target = -1;
    int source = -1;
    std::string purpose;  // "QMP", "interfaces[0] (net0): tap"
};

struct CommandLine {
    std::vector<std::string> argv;  // argv[0] is the binary
    std::vector<InheritedFd> fds;   // targets 3, 4, ... without gaps, in the order argv names them
};

// The complete command line of a VM: argv, and the fd plan that makes every fd number in argv
// point at the right file (QMP's socket, inherited tap fds). Every -device, -blockdev, -netdev
// and -object argument is JSON, so no path or name can inject an option. Fails (Errc::topology)
// when the topology was not planned from this spec, and (Errc::invalid_spec) for a spec built
// in code that QEMU cannot be given (strings that are not UTF-8, a console in two places).
QSHIM_API Result<CommandLine> build_command(const spec::VmSpec& spec,
                                            const topology::Topology& topology,
                                            const CommandOptions& options = {});

// For a process whose only job is supervising VMs (`qshim run` calls it once QEMU runs and the
// API socket is bound): sets no_new_privs and keeps, of the capabilities it holds, only what a
// supervisor of a QEMU running as another uid still uses: CAP_KILL (signalling QEMU),
// CAP_SETUID and CAP_SETGID (checking a hot-plugged image as QEMU's uid, in a short-lived child),
// CAP_DAC_OVERRIDE (removing the sockets QEMU left in folders only QEMU's uid may write),
// CAP_SYS_NICE (setting the CPU affinity of QEMU's threads again when the cpuset changes), and,
// when `needs` says so, CAP_CHOWN (giving the folder of a helper started while the VM runs to
// QEMU's uid). The bounding set shrinks to the same when allowed. Without capabilities (a
// non-root pod), only no_new_privs changes. Process-wide and one-way: not for a controller that
// needs more.
struct SupervisorNeeds {
    // Helper processes may start while the VM runs: a storageDaemon disk hot-plugged into a VM
    // whose RAM is shared (docs/helpers.md).
    bool helpers_while_running = false;
};
QSHIM_API SupervisorNeeds supervisor_needs(const spec::VmSpec& spec);
QSHIM_API Result<void> lock_down_supervisor(const SupervisorNeeds& needs = {});

// Escapes a value for QEMU's key=value,... option syntax (used only where QEMU 7.2 has no JSON
// form: -chardev, -name): a comma is written twice.
QSHIM_API std::string qemu_opts_escape(std::string_view value);

// The block node names of a disk (format node on top of its file node); at most 31 characters,
// QEMU's limit, whatever the disk's name.
QSHIM_API std::string format_node_name(std::string_view disk_name);
QSHIM_API std::string file_node_name(std::string_view disk_name);
// An ephemeral disk's image (format node) and its overlay's file node; the overlay's qcow2 node
// is format_node_name.
QSHIM_API std::string image_node_name(std::string_view disk_name);
QSHIM_API std::string overlay_node_name(std::string_view disk_name);
// A disc inserted into a running VM's cdrom drive, when format_node_name holds the one before
// (the two names alternate from one change to the next).
QSHIM_API std::string media_node_name(std::string_view disk_name);
QSHIM_API std::string netdev_id(std::string_view interface_name);

}  // namespace qshim::launcher
