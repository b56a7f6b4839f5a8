// Listening, connecting and JSON lines on the migration socket, before and after QEMU's stream.
#include "launcher/migration_channel.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/deadline.hpp"

namespace qshim::launcher::detail {

namespace asio = boost::asio;
using generic = asio::generic::stream_protocol;
using nlohmann::json;
constexpr auto token = asio::as_tuple(asio::use_awaitable);

class MigrationListener::Acceptor : public asio::basic_socket_acceptor<generic> {
  public:
    using asio::basic_socket_acceptor<generic>::basic_socket_acceptor;
};

namespace {

Error bad_address(std::string_view text, const std::string& why) {
    return make_error(Errc::invalid_spec,
                      fmt::format("migration address '{}': {} (expected unix:PATH, "
                                  "tcp:HOST:PORT or, to listen, fd:N)",
                                  text, why));
}

}  // namespace

Result<MigrationAddress> parse_migration_address(std::string_view text, bool listening) {
    MigrationAddress a;
    a.text = std::string(text);
    if (text.rfind("unix:", 0) == 0) {
        a.kind = MigrationAddress::Kind::unix_socket;
        a.path = std::string(text.substr(5));
        if (a.path.empty()) return bad_address(text, "the socket path is empty");
        if (a.path.size() >= sizeof(sockaddr_un{}.sun_path))
            return bad_address(text, "the socket path is longer than 107 bytes");
        return a;
    }
    if (text.rfind("tcp:", 0) == 0) {
        a.kind = MigrationAddress::Kind::tcp;
        std::string_view rest = text.substr(4);
        auto colon = rest.rfind(':');
        if (colon == std::string_view::npos) return bad_address(text, "no port");
        a.host = std::string(rest.substr(0, colon));
        a.port = std::string(rest.substr(colon + 1));
        if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']')
            a.host = a.host.substr(1, a.host.size() - 2);
        if (a.host.empty()) return bad_address(text, "no host");
        unsigned port = 0;
        auto [end, ec] = std::from_chars(a.port.data(), a.port.data() + a.port.size(), port);
        if (ec != std::errc() || end != a.port.data() + a.port.size() || port == 0 || port > 65535)
            return bad_address(text, "the port must be 1 to 65535");
        return a;
    }
    if (text.rfind("fd:", 0) == 0) {
        if (!listening)
            return bad_address(text, "fd: is for the listening side (qshim run --incoming)");
        a.kind = MigrationAddress::Kind::fd;
        std::string_view n = text.substr(3);
        auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), a.fd);
        if (ec != std::errc() || end != n.data() + n.size() || a.fd < 3)
            return bad_address(text, "N must be an inherited descriptor, 3 or more");
        return a;
    }
    return bad_address(text, "unknown transport");
}

Result<std::unique_ptr<MigrationListener>> MigrationListener::open(
    asio::any_io_executor ex, const MigrationAddress& address) {
    std::unique_ptr<MigrationListener> l(new MigrationListener());
    l->acceptor_ = std::make_unique<Acceptor>(ex);
    l->description_ = address.text;
    const std::string context = "listening for the migration on " + address.text;
    boost::system::error_code ec;
    switch (address.kind) {
        case MigrationAddress::Kind::fd: {
            int type = 0, listening = 0;
            socklen_t len = sizeof type;
            if (getsockopt(address.fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
                type != SOCK_STREAM)
                return make_error(
                    Errc::invalid_spec,
                    fmt::format("fd {} is not an inherited stream socket", address.fd), context);
            len = sizeof listening;
            if (getsockopt(address.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
                !listening)
                return make_error(Errc::invalid_spec,
                                  fmt::format("fd {} is a socket that does not listen", address.fd),
                                  context);
            sockaddr_storage ss{};
            len = sizeof ss;
            getsockname(address.fd, reinterpret_cast<sockaddr*>(&ss), &len);
            int fd = dup(address.fd);  // the inherited number stays as it was; ours is closed
            if (fd < 0) return make_error(Errc::io, std::strerror(errno), context);
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            l->acceptor_->assign(generic(ss.ss_family, 0), fd, ec);
            break;
        }
        case MigrationAddress::Kind::unix_socket: {
            struct stat st {};
            if (lstat(address.path.c_str(), &st) == 0)
                return make_error(
                    Errc::conflict,
                    fmt::format("{} already exists; remove it, or choose another path",
                                address.path),
                    context);
            asio::local::stream_protocol::endpoint ep(address.path);
            l->acceptor_->open(generic(AF_UNIX, 0), ec);
            if (!ec) l->acceptor_->bind(generic::endpoint(ep), ec);
            if (!ec) {
                l->unlink_path_ = address.path;
                chmod(address.path.c_str(), 0600);  // only qshim's uid (the relay) may connect
                l->acceptor_->listen(1, ec);
            }
            break;
        }
        case MigrationAddress::Kind::tcp: {
            asio::ip::tcp::resolver resolver(ex);
            auto results =
                resolver.resolve(address.host, address.port, asio::ip::tcp::resolver::passive, ec);
            if (ec || results.empty())
                return make_error(Errc::io,
                                  fmt::format("cannot resolve {}: {}", address.host,
                                              ec ? ec.message() : "no address"),
                                  context);
            auto ep = results.begin()->endpoint();
            l->acceptor_->open(generic(ep.protocol().family(), 0), ec);
            if (!ec) l->acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
            if (!ec) l->acceptor_->bind(generic::endpoint(ep), ec);
            if (!ec) l->acceptor_->listen(1, ec);
            break;
        }
    }
    if (ec) return make_error(Errc::io, ec.message(), context);
    return l;
}

MigrationListener::~MigrationListener() {
    close();
    if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
}

void MigrationListener::close() {
    boost::system::error_code ignored;
    if (acceptor_) acceptor_->close(ignored);
}

asio::awaitable<Result<MigrationSocket>> MigrationListener::accept() {
    auto [ec, socket] = co_await acceptor_->async_accept(token);
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor)
        co_return make_error(Errc::interrupted, "stopped listening",
                             "waiting for the migration on " + description_);
    if (ec)
        co_return make_error(Errc::io, ec.message(),
                             "waiting for the migration on " + description_);
    co_return std::move(socket);
}

asio::awaitable<Result<void>> connect_migration(MigrationSocket& socket,
                                                const MigrationAddress& address,
                                                std::chrono::milliseconds timeout) {
    const std::string context = "connecting to the migration target " + address.text;
    auto ex = socket.get_executor();
    boost::system::error_code ec;
    generic::endpoint endpoint;
    if (address.kind == MigrationAddress::Kind::unix_socket) {
        endpoint = generic::endpoint(asio::local::stream_protocol::endpoint(address.path));
    } else if (address.kind == MigrationAddress::Kind::tcp) {
        asio::ip::tcp::resolver resolver(ex);
        auto [rec, results] = co_await resolver.async_resolve(address.host, address.port, token);
        if (rec || results.empty())
            co_return make_error(Errc::io,
                                 fmt::format("cannot resolve {}: {}", address.host,
                                             rec ? rec.message() : "no address"),
                                 context);
        endpoint = generic::endpoint(results.begin()->endpoint());
    } else {
        co_return make_error(Errc::invalid_spec, "fd: cannot be connected to", context);
    }
    socket.open(endpoint.protocol(), ec);
    if (ec) co_return make_error(Errc::io, ec.message(), context);
    auto r = co_await qshim::detail::within(ex, timeout, socket.async_connect(endpoint, token));
    if (!r)
        co_return make_error(Errc::timeout,
                             fmt::format("no connection within {} ms", timeout.count()), context);
    auto cec = std::get<0>(*r);
    if (cec == asio::error::operation_aborted || cec == asio::error::bad_descriptor)
        co_return make_error(Errc::interrupted, "the socket was closed while connecting", context);
    if (cec) co_return make_error(Errc::io, cec.message(), context);
    co_return Result<void>{};
}

Result<ParkedSocket> park(MigrationSocket& socket) {
    boost::system::error_code ec;
    auto endpoint = socket.local_endpoint(ec);
    if (ec) return make_error(Errc::io, ec.message(), "setting the migration socket aside");
    int fd = socket.release(ec);
    if (ec) return make_error(Errc::io, ec.message(), "setting the migration socket aside");
    return ParkedSocket{qshim::detail::UniqueFd(fd), endpoint.protocol()};
}

Result<void> unpark(MigrationSocket& socket, ParkedSocket parked) {
    boost::system::error_code ec;
    socket.assign(parked.protocol, parked.fd.get(), ec);
    if (ec) return make_error(Errc::io, ec.message(), "taking the migration socket back");
    parked.fd.release();  // the socket owns it now
    return Result<void>{};
}

asio::awaitable<Result<void>> send_message(MigrationSocket& socket, const json& message,
                                           std::chrono::milliseconds timeout) {
    std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    // QEMU may have switched the shared file description to blocking mode.
    socket.native_non_blocking(true);
    auto r = co_await qshim::detail::within(socket.get_executor(), timeout,
                                            asio::async_write(socket, asio::buffer(line), token));
    if (!r)
        co_return make_error(Errc::timeout,
                             fmt::format("the peer took nothing within {} ms", timeout.count()));
    if (auto ec = std::get<0>(*r)) co_return make_error(Errc::io, "sending: " + ec.message());
    co_return Result<void>{};
}

asio::awaitable<Result<json>> receive_message(MigrationSocket& socket,
                                              std::chrono::milliseconds timeout) {
    socket.native_non_blocking(true);
    asio::streambuf buffer(max_message_bytes);
    auto r = co_await qshim::detail::within(socket.get_executor(), timeout,
                                            asio::async_read_until(socket, buffer, '\n', token));
    if (!r)
        co_return make_error(Errc::timeout,
                             fmt::format("the peer said nothing within {} ms", timeout.count()));
    auto ec = std::get<0>(*r);
    std::size_t n = std::get<1>(*r);
    if (ec == asio::error::eof)
        co_return make_error(Errc::interrupted, "the peer closed the connection");
    if (ec == asio::error::not_found)
        co_return make_error(Errc::protocol,
                             fmt::format("a message longer than {} bytes", max_message_bytes));
    if (ec) co_return make_error(Errc::io, "receiving: " + ec.message());
    if (buffer.size() != n)
        co_return make_error(Errc::protocol, "the peer sent more than one message unanswered");
    std::string line(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + n);
    json message = json::parse(line, nullptr, false);
    if (message.is_discarded() || !message.is_object())
        co_return make_error(Errc::protocol, "the peer's message is not a JSON object");
    co_return message;
}

}  // namespace qshim::launcher::detail
