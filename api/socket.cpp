// Creating the API socket file safely, and checking who connects to it.
#include "api/socket.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unix_socket.hpp"

namespace qshim::api {

namespace {

Error sys_error(Errc code, const std::string& what, const std::string& path, int err) {
    return make_error(code, fmt::format("{} {}: {}", what, path, std::strerror(err)),
                      "serving the API on " + path);
}

sockaddr_un address_of(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());  // length checked by the caller
    return a;
}

}  // namespace

bool peer_allowed(uid_t peer, uid_t self) { return peer == self || peer == 0; }

Result<uid_t> peer_uid(int fd) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return make_error(Errc::io, fmt::format("SO_PEERCRED: {}", std::strerror(errno)),
                          "checking an API client");
    return cred.uid;
}

Result<Listener> listen_unix(const std::string& path, int backlog) {
    const std::string context = "serving the API on " + path;
    if (path.empty())
        return make_error(Errc::invalid_spec, "the API socket path is empty", context);
    if (path.size() >= sizeof(sockaddr_un{}.sun_path))
        return make_error(Errc::invalid_spec,
                          fmt::format("the path is {} bytes; a unix socket path holds at most {}",
                                      path.size(), sizeof(sockaddr_un{}.sun_path) - 1),
                          context);
    if (path.find('\0') != std::string::npos)
        return make_error(Errc::invalid_spec, "the API socket path contains a NUL byte", context);

    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return make_error(Errc::conflict,
                              fmt::format("{} exists and is not a socket; not replacing it", path),
                              context);
        auto probe = qshim::detail::probe_unix_socket(path);
        if (probe == qshim::detail::SocketProbe::served)
            return make_error(Errc::conflict, fmt::format("another process is serving on {}", path),
                              context);
        if (probe == qshim::detail::SocketProbe::unknown)
            return sys_error(Errc::io, "cannot probe the existing socket", path, errno);
        // A killed run's leftover: nothing listens, so nobody loses anything when it goes.
        if (unlink(path.c_str()) != 0 && errno != ENOENT)
            return sys_error(Errc::io, "cannot remove the stale socket", path, errno);
    } else if (errno != ENOENT) {
        return sys_error(Errc::io, "cannot inspect", path, errno);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return sys_error(Errc::io, "socket() for", path, errno);
    sockaddr_un a = address_of(path);
    // bind() creates the file with 0777 & ~umask; fchmod on the fd does not reach the file, and a
    // chmod after bind leaves a window. Hence the umask around bind.
    mode_t old = umask(0177);
    int rc = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    int err = errno;
    umask(old);
    if (rc != 0) {
        close(fd);
        return sys_error(err == EADDRINUSE ? Errc::conflict : Errc::io, "cannot bind", path, err);
    }
    Listener l;
    l.fd = fd;
    auto fail = [&](const char* what) -> Error {
        int e = errno;
        close(fd);
        unlink(path.c_str());
        return sys_error(Errc::io, what, path, e);
    };
    if (chmod(path.c_str(), 0600) != 0) return fail("cannot chmod 0600");  // belt and braces
    if (lstat(path.c_str(), &st) != 0) return fail("cannot stat");
    l.dev = st.st_dev;
    l.ino = st.st_ino;
    if (listen(fd, backlog) != 0) return fail("cannot listen on");
    return l;
}

void unlink_if_same(const std::string& path, dev_t dev, ino_t ino) {
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev &&
        st.st_ino == ino)
        unlink(path.c_str());
}

}  // namespace qshim::api
