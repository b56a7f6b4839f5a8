// Checks made before QEMU starts, so a missing file is a clear error and not a half-started VM.
#pragma once

#include <qshim/error.hpp>
#include <qshim/spec.hpp>

namespace qshim::launcher::detail {

// Every file the spec names exists and can be opened as needed; every socket or log's folder
// exists; no socket path is taken by something that is not a socket.
Result<void> preflight(const spec::VmSpec& spec);

// Removes the unix sockets QEMU serves for this spec (serial, guest agent) when they exist as
// sockets: left behind by a QEMU that was killed, they would make the next start fail.
void remove_stale_sockets(const spec::VmSpec& spec);

}  // namespace qshim::launcher::detail
