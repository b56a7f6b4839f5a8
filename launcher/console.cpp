// ConsoleRelay: the guest's serial console between QEMU and one attached client.
#include "launcher/console.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <qshim/log.hpp>

#include "common/spawn.hpp"

namespace qshim::launcher::detail {

namespace asio = boost::asio;

namespace {
constexpr auto token = asio::as_tuple(asio::use_awaitable);
}

void ConsoleRelay::start(int fd, qshim::detail::UniqueFd log) {
    log_ = std::move(log);
    socket_.assign(asio::local::stream_protocol(), fd);
    open_ = true;
    qshim::detail::spawn(socket_.get_executor(), read_loop(shared_from_this()),
                         "reading the serial console");
}

void ConsoleRelay::close() {
    if (ended_) return;
    ended_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    auto end = std::move(on_end_);
    on_output_ = nullptr;
    on_end_ = nullptr;
    client_ = 0;
    if (end) end();
}

Result<std::size_t> ConsoleRelay::attach(Output on_output, End on_end) {
    if (ended_ || !open_)
        return make_error(Errc::state, "the console has ended: the VM is not running",
                          "attaching to the serial console");
    if (client_ != 0)
        return make_error(Errc::state, "another client is attached to the console",
                          "attaching to the serial console");
    client_ = ++last_id_;
    on_output_ = std::move(on_output);
    on_end_ = std::move(on_end);
    return client_;
}

void ConsoleRelay::detach(std::size_t id) {
    if (id == 0 || id != client_) return;
    client_ = 0;
    on_output_ = nullptr;
    on_end_ = nullptr;
}

asio::awaitable<Result<void>> ConsoleRelay::write(std::string bytes) {
    if (ended_ || !open_)
        co_return make_error(Errc::state, "the console has ended", "writing to the serial console");
    auto self = shared_from_this();  // the VM may end while the write waits
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(bytes), token);
    if (ec) co_return make_error(Errc::io, ec.message(), "writing to the serial console");
    co_return Result<void>{};
}

// A regular file, written the way QEMU wrote its log: blocking, best effort. A log that fails
// (a full disk) stops logging with one warning; the console goes on.
void ConsoleRelay::append_to_log(std::string_view bytes) {
    while (log_ && !bytes.empty()) {
        ssize_t n = ::write(log_.get(), bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            log::write("console", log::Level::warn,
                       fmt::format("serial.log: writing failed ({}); no more is logged",
                                   n < 0 ? std::strerror(errno) : "no progress"));
            log_.reset();
            return;
        }
        bytes.remove_prefix(static_cast<size_t>(n));
    }
}

asio::awaitable<void> ConsoleRelay::read_loop(std::shared_ptr<ConsoleRelay> self) {
    char buffer[4096];
    for (;;) {
        auto [ec, n] = co_await self->socket_.async_read_some(asio::buffer(buffer), token);
        if (ec) break;  // QEMU closed its end (it exited), or close() did
        self->append_to_log(std::string_view(buffer, n));
        // A copy: the client may detach from inside its callback.
        if (auto out = self->on_output_) out(std::string_view(buffer, n));
    }
    self->close();
}

}  // namespace qshim::launcher::detail
