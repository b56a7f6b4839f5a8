// The control API's unix socket: created 0600 with no window of wider access, stale files
// replaced only when provably dead, and peers admitted by their credentials.
#pragma once

#include <sys/types.h>

#include <qshim/error.hpp>
#include <string>

namespace qshim::api {

// Who may talk to the API: the user the server runs as (effective uid), or root. A socket mode
// of 0600 already says this; the check also covers a socket passed on or a chmod by mistake.
bool peer_allowed(uid_t peer, uid_t self);

// The uid of the process at the other end of a connected unix socket (SO_PEERCRED).
[[nodiscard]] Result<uid_t> peer_uid(int fd);

struct Listener {
    int fd = -1;    // listening, close-on-exec; the caller owns it
    dev_t dev = 0;  // the socket file's identity, so stop() removes only our own file
    ino_t ino = 0;
};

// Binds and listens on `path`. A socket file already there is replaced only when nothing listens
// on it (connect fails with ECONNREFUSED: a killed run left it); a live socket is Errc::conflict,
// any other kind of file Errc::conflict too (never deleted). The file is created under umask
// 0177 (mode 0600 from the first instant) and chmod'ed 0600 again after bind. Not thread-safe:
// umask is process-wide, so call it before starting threads that create files.
[[nodiscard]] Result<Listener> listen_unix(const std::string& path, int backlog);

// Removes `path` if it is still the file listen_unix created (same device and inode).
void unlink_if_same(const std::string& path, dev_t dev, ino_t ino);

}  // namespace qshim::api
