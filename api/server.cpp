// ApiServer: the listening socket and its accept loop; each connection runs as its own coroutine.
#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <qshim/api.hpp>
#include <qshim/log.hpp>

#include "api/session.hpp"
#include "api/socket.hpp"
#include "common/spawn.hpp"

namespace qshim {

namespace asio = boost::asio;
using asio::local::stream_protocol;

class ApiServer::Impl : public std::enable_shared_from_this<Impl> {
  public:
    Impl(asio::any_io_executor ex, Vm& vm, std::string path, ApiOptions options)
        : ex_(ex),
          path_(std::move(path)),
          acceptor_(ex),
          ctx_(std::make_shared<api::ServerContext>(vm, options)) {}

    Result<void> start() {
        if (started_)
            return make_error(Errc::state, "the API server was already started",
                              "serving the API on " + path_);
        auto listener = api::listen_unix(path_, 64);
        if (!listener) return std::move(listener).error();
        boost::system::error_code ec;
        acceptor_.assign(stream_protocol(), listener->fd, ec);
        if (ec) {
            ::close(listener->fd);
            api::unlink_if_same(path_, listener->dev, listener->ino);
            return make_error(Errc::io, ec.message(), "serving the API on " + path_);
        }
        started_ = true;
        dev_ = listener->dev;
        ino_ = listener->ino;
        detail::spawn(ex_, accept_loop(shared_from_this()), "accepting API connections");
        log::write("api", log::Level::info, fmt::format("serving the API on {}", path_));
        return {};
    }

    void stop() {
        if (!started_ || ctx_->stopped) return;
        ctx_->stopped = true;
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        api::unlink_if_same(path_, dev_, ino_);
        // A closer may end its connection at once, which erases it from the map: iterate a copy.
        auto closers = ctx_->closers;
        for (auto& [id, close] : closers) close();
        log::write("api", log::Level::info, fmt::format("stopped serving the API on {}", path_));
    }

    const std::string& path() const { return path_; }

  private:
    static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
        constexpr auto token = asio::as_tuple(asio::use_awaitable);
        for (;;) {
            auto [ec, socket] = co_await self->acceptor_.async_accept(token);
            if (self->ctx_->stopped || ec == asio::error::operation_aborted) co_return;
            if (ec) {
                // Out of fds or memory: wait a little rather than spin, and keep serving.
                log::write("api", log::Level::warn, "accepting an API connection: " + ec.message());
                asio::steady_timer pause(self->ex_, std::chrono::milliseconds(100));
                co_await pause.async_wait(token);
                continue;
            }
            detail::spawn(self->ex_, api::serve_connection(self->ctx_, std::move(socket)),
                          "serving an API connection");
        }
    }

    asio::any_io_executor ex_;
    std::string path_;
    stream_protocol::acceptor acceptor_;
    std::shared_ptr<api::ServerContext> ctx_;
    bool started_ = false;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

ApiServer::ApiServer(asio::any_io_executor executor, Vm& vm, std::string socket_path,
                     ApiOptions options)
    : impl_(std::make_shared<Impl>(executor, vm, std::move(socket_path), options)) {}

ApiServer::~ApiServer() { impl_->stop(); }

Result<void> ApiServer::start() { return impl_->start(); }

void ApiServer::stop() { impl_->stop(); }

const std::string& ApiServer::socket_path() const { return impl_->path(); }

}  // namespace qshim
