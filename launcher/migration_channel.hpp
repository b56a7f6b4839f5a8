// The migration stream's socket before QEMU gets it: addresses, listening, connecting, and the
// short JSON-line exchanges the two qshim have on it (docs/migration.md, "the handshake").
#pragma once

#include <sys/socket.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <qshim/error.hpp>
#include <string>

#include "common/unique_fd.hpp"

namespace qshim::launcher::detail {

// The error, with what we were doing as its context (kept before an inner one).
inline Error with_context(Error error, const std::string& context) {
    error.context = error.context.empty() ? context : context + ": " + error.context;
    return error;
}

// unix:PATH, tcp:HOST:PORT, or (listening side only) fd:N, an inherited listening socket.
struct MigrationAddress {
    enum class Kind { unix_socket, tcp, fd };
    Kind kind = Kind::unix_socket;
    std::string path;  // unix
    std::string host;  // tcp; [v6] brackets removed
    std::string port;  // tcp
    int fd = -1;       // fd
    std::string text;  // as given
};

// Errc::invalid_spec naming what is wrong. `listening`: fd:N is allowed.
Result<MigrationAddress> parse_migration_address(std::string_view text, bool listening);

using MigrationSocket = boost::asio::generic::stream_protocol::socket;

// The target's listening socket. A unix socket it created is removed when it is destroyed.
class MigrationListener {
  public:
    static Result<std::unique_ptr<MigrationListener>> open(boost::asio::any_io_executor ex,
                                                           const MigrationAddress& address);
    ~MigrationListener();
    // The first connection. Cancelled (Errc::interrupted) by close().
    boost::asio::awaitable<Result<MigrationSocket>> accept();
    void close();
    const std::string& description() const { return description_; }

    class Acceptor;

  private:
    MigrationListener() = default;
    std::unique_ptr<Acceptor> acceptor_;
    std::string unlink_path_;
    std::string description_;  // "unix:/run/in.sock", "tcp:[::]:4444"
};

// Connects `socket` (owned by the caller, so that closing it ends the wait at once: a cancel)
// to a unix: or tcp: address. Errc::interrupted when the socket was closed meanwhile.
boost::asio::awaitable<Result<void>> connect_migration(MigrationSocket& socket,
                                                       const MigrationAddress& address,
                                                       std::chrono::milliseconds timeout);

// A migration socket set aside while QEMU streams on its own copy of it: still open (the steps
// after the stream need it), but out of asio's reactor, which would otherwise wake qshim at every
// packet QEMU receives (some 700 in a 100 MiB migration, on the target).
struct ParkedSocket {
    qshim::detail::UniqueFd fd;
    boost::asio::generic::stream_protocol protocol{AF_UNIX, 0};
};
// `socket` is left closed (and reusable by unpark).
Result<ParkedSocket> park(MigrationSocket& socket);
Result<void> unpark(MigrationSocket& socket, ParkedSocket parked);

// The largest handshake message: a fingerprint of a VM with hundreds of devices is ~100 KiB.
inline constexpr std::size_t max_message_bytes = 1u << 20;

// One JSON object and a newline.
boost::asio::awaitable<Result<void>> send_message(MigrationSocket& socket,
                                                  const nlohmann::json& message,
                                                  std::chrono::milliseconds timeout);
// One line, parsed. The peer never sends before it is answered, so a byte after the newline is
// a protocol error (it would be the start of QEMU's stream, lost to QEMU).
boost::asio::awaitable<Result<nlohmann::json>> receive_message(MigrationSocket& socket,
                                                               std::chrono::milliseconds timeout);

}  // namespace qshim::launcher::detail
