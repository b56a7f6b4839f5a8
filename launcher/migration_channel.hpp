// The migration stream's socket before QEMU gets it: addresses, listening, connecting, and the
// short JSON-line exchanges the two qshim have on it (docs/migration.md, "the handshake").
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <qshim/error.hpp>
#include <string>

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

boost::asio::awaitable<Result<MigrationSocket>> connect_migration(
    boost::asio::any_io_executor ex, const MigrationAddress& address,
    std::chrono::milliseconds timeout);

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
