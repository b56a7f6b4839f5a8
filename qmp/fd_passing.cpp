// sendmsg with SCM_RIGHTS on a unix stream socket.
#include "qmp/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace qshim::qmp::detail {

std::size_t send_with_fd(int socket, std::string_view data, int fd, std::error_code& ec) {
    ec.clear();
    if (data.empty()) {
        // The fd travels with a byte; without one the kernel would drop it silently.
        ec = std::make_error_code(std::errc::invalid_argument);
        return 0;
    }
    iovec iov{const_cast<char*>(data.data()), data.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    std::memset(control, 0, sizeof control);
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    for (;;) {
        // MSG_NOSIGNAL: a vanished peer is an error to report, not a SIGPIPE to die of.
        ssize_t n = ::sendmsg(socket, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) return static_cast<std::size_t>(n);
        if (n < 0 && errno == EINTR) continue;
        int err = n < 0 ? errno : EIO;
        if (err == EWOULDBLOCK) err = EAGAIN;
        ec = std::error_code(err, std::generic_category());
        return 0;
    }
}

}  // namespace qshim::qmp::detail
