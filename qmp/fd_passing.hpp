// Sending a file descriptor along with QMP bytes (SCM_RIGHTS), for getfd and add-fd.
#pragma once

#include <cstddef>
#include <string_view>
#include <system_error>

namespace qshim::qmp::detail {

// Sends a prefix of `data` on the unix stream socket `socket` with `fd` attached, without
// blocking. Returns the number of bytes sent (at least one) or sets `ec` (would_block when the
// socket buffer is full: wait for writability and call again). The caller keeps `fd`.
std::size_t send_with_fd(int socket, std::string_view data, int fd, std::error_code& ec);

}  // namespace qshim::qmp::detail
