// Whether a unix socket file is served: the one probe for stale sockets left by killed runs.
#pragma once

#include <string>

namespace qshim::launcher::detail {

enum class SocketProbe {
    served,   // something accepts connections on it
    stale,    // nothing listens (connect: ECONNREFUSED): a leftover, safe to remove
    unknown,  // the probe failed (permission, not a stream socket, path too long); errno is set
};

SocketProbe probe_unix_socket(const std::string& path);

}  // namespace qshim::launcher::detail
