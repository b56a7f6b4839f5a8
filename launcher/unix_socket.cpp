// probe_unix_socket(): connect and see, the only way to tell a live socket from a leftover.
#include "launcher/unix_socket.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace qshim::launcher::detail {

SocketProbe probe_unix_socket(const std::string& path) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return SocketProbe::unknown;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return SocketProbe::unknown;
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int err = errno;
    close(fd);
    if (rc == 0) return SocketProbe::served;
    if (err == ECONNREFUSED) return SocketProbe::stale;
    errno = err;
    return SocketProbe::unknown;
}

}  // namespace qshim::launcher::detail
