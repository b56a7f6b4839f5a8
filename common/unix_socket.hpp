// Whether a unix socket file is served: the one probe for stale sockets left by killed runs.
#pragma once

#include <string>

namespace qshim::detail {

enum class SocketProbe {
    served,   // something accepts connections on it (or its backlog is full: still alive)
    stale,    // nothing listens (connect: ECONNREFUSED): a leftover, safe to remove
    unknown,  // the probe failed (permission, not a stream socket, path too long); errno is set
};

// Never blocks: the connect is non-blocking, and a unix-domain connect never answers
// EINPROGRESS, so it completes (or fails with EAGAIN on a full backlog) at once. Safe to call
// from the event loop.
SocketProbe probe_unix_socket(const std::string& path);

}  // namespace qshim::detail
