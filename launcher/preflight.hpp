// Checks made before QEMU starts, so a missing file is a clear error and not a half-started VM.
#pragma once

#include <optional>
#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

#include "launcher/access_check.hpp"

namespace qshim::launcher::detail {

struct PreflightInput {
    QemuIdentity qemu;                 // files are checked as QEMU will open them
    std::string qmp_socket;            // a listening QMP socket QEMU creates; empty: none
    std::optional<spec::Accel> accel;  // overrides machine.accel (CommandOptions::accel)
    std::string kvm = "/dev/kvm";
    std::string firmware_dir = "/usr/share/OVMF";  // CommandOptions::firmware_dir
    // serial.log is written by qshim's console relay (VmOptions::own_console), not by QEMU: only
    // its folder is checked here, and qshim opens it itself before QEMU starts.
    bool serial_log_by_qshim = false;
    std::string storage_daemon_binary = "qemu-storage-daemon";  // CommandOptions'
    std::string virtiofsd_binary = "/usr/lib/qemu/virtiofsd";
    std::string passt_binary = "passt";
};

// Every file the spec names exists and can be opened by QEMU's uid as needed; every socket or
// log's folder exists and QEMU's uid may create files there; no socket path is taken by
// something that is not a socket; with accel kvm, QEMU's uid can open /dev/kvm. Things that
// change behaviour without being errors (accel auto without a usable /dev/kvm: TCG) are added to
// `warnings`.
Result<void> preflight(const spec::VmSpec& spec, const PreflightInput& input,
                       std::vector<std::string>& warnings);

// Why a disk's image cannot be used as the spec says (missing, unreadable or not writable by
// QEMU's uid, a directory, cache none on a file system without O_DIRECT); empty when it can.
std::string disk_file_problem(const spec::Disk& disk, const QemuIdentity& qemu);

// Why QEMU cannot connect to a vhost-user-blk server's socket at `path` (missing, or not a
// socket); empty when it can try.
std::string vhost_user_socket_problem(const std::string& path);

// Removes the unix sockets QEMU serves for this spec (serial, guest agent) when they exist as
// sockets: left behind by a QEMU that was killed, they would make the next start fail.
void remove_stale_sockets(const spec::VmSpec& spec);
void remove_stale_socket(const std::string& path);  // the same for one path; empty: nothing

}  // namespace qshim::launcher::detail
