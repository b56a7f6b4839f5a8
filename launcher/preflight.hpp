// Checks made before QEMU starts, so a missing file is a clear error and not a half-started VM.
#pragma once

#include <qshim/error.hpp>
#include <qshim/spec.hpp>

namespace qshim::launcher::detail {

// Every file the spec names exists and can be opened as needed; every socket or log's folder
// exists; no socket path is taken by something that is not a socket.
Result<void> preflight(const spec::VmSpec& spec);

// Why a disk's image cannot be used as the spec says (missing, unreadable, not writable though
// read-write, a directory); empty when it can.
std::string disk_file_problem(const spec::Disk& disk);

// Removes the unix sockets QEMU serves for this spec (serial, guest agent) when they exist as
// sockets: left behind by a QEMU that was killed, they would make the next start fail.
void remove_stale_sockets(const spec::VmSpec& spec);
void remove_stale_socket(const std::string& path);  // the same for one path; empty: nothing

}  // namespace qshim::launcher::detail
