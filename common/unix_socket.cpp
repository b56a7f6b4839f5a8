// probe_unix_socket(): connect and see, the only way to tell a live socket from a leftover.
#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qshim::detail {

SocketProbe probe_unix_socket(const std::string& path) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return SocketProbe::unknown;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    // Non-blocking: a blocking connect to a listener whose backlog is full waits until the
    // listener accepts, which could stall the supervisor's event loop for as long as a stuck
    // (or SIGSTOPped) peer lets it.
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return SocketProbe::unknown;
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int err = errno;
    close(fd);
    if (rc == 0) return SocketProbe::served;
    if (err == ECONNREFUSED) return SocketProbe::stale;
    // A full backlog: somebody listens but has not accepted yet. Alive, never to be removed.
    if (err == EAGAIN || err == EINPROGRESS) return SocketProbe::served;
    errno = err;
    return SocketProbe::unknown;
}

}  // namespace qshim::detail
