// Client::Impl: the QMP connection, its single reader and serialized writer, and id routing.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <qshim/qmp.hpp>
#include <unordered_map>
#include <unordered_set>

#include "common/spawn.hpp"
#include "common/unique_fd.hpp"
#include "qmp/events.hpp"
#include "qmp/fd_passing.hpp"
#include "qmp/framing.hpp"
#include "qmp/message.hpp"

namespace qshim::qmp {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Socket = asio::local::stream_protocol::socket;

const char* to_string(State state) {
    switch (state) {
        case State::idle:
            return "idle";
        case State::connecting:
            return "connecting";
        case State::running:
            return "running";
        case State::disconnected:
            return "disconnected";
    }
    return "unknown";
}

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Remembered so a late reply is told apart from a bogus one; bounded because a daemon lives long.
constexpr std::size_t max_remembered_timeouts = 1024;
constexpr std::size_t read_chunk_bytes = 64 * 1024;

Error with_context(Error error, std::string context) {
    error.context = std::move(context);
    return error;
}

Duration remaining(Clock::time_point deadline) {
    return std::max(Duration(0), std::chrono::ceil<Duration>(deadline - Clock::now()));
}

}  // namespace

class Client::Impl : public std::enable_shared_from_this<Impl> {
  public:
    Impl(asio::any_io_executor executor, ClientOptions options)
        : executor_(executor),
          options_(options),
          socket_(executor),
          framer_(options.max_message_bytes),
          greeting_signal_(executor) {}

    // The coroutines are static and take the Impl by shared_ptr: they keep it alive while
    // suspended, even if the Client that started them is destroyed.
    static asio::awaitable<Result<Json>> connect_fd(std::shared_ptr<Impl> self, int fd);
    static asio::awaitable<Result<Json>> connect_path(std::shared_ptr<Impl> self, std::string path);
    static asio::awaitable<Result<Json>> execute(std::shared_ptr<Impl> self, std::string command,
                                                 Json arguments, std::optional<Duration> timeout,
                                                 std::optional<int> fd);

    std::shared_ptr<EventListener> listen(EventFilter filter, std::size_t capacity) {
        return listeners_.add(executor_, std::move(filter), capacity,
                              state_ == State::disconnected);
    }
    void close() {
        teardown(make_error(Errc::interrupted, "the QMP connection was closed by its owner"));
    }
    State state() const { return state_; }
    std::optional<Error> close_reason() const { return close_error_; }
    Stats stats() const { return stats_; }

  private:
    struct Pending {
        Pending(const asio::any_io_executor& executor, std::string command)
            : command(std::move(command)), signal(executor) {}
        std::string command;
        asio::steady_timer signal;  // expires at the deadline; cancelled once `result` is set
        std::optional<Result<Json>> result;
    };
    struct Outgoing {
        std::string id;
        std::string bytes;
        // A duplicate of the caller's fd, owned until sent: the caller may close its own copy as
        // soon as its call returns, even when the command timed out still queued.
        qshim::detail::UniqueFd fd;
    };
    // Forgets a command whose caller stopped waiting, on every path out of run_command.
    struct PendingGuard {
        Impl& impl;
        std::string id;
        const Pending* pending;
        ~PendingGuard() { impl.forget(id, pending); }
    };

    static asio::awaitable<Result<Json>> handshake(std::shared_ptr<Impl> self, std::string context,
                                                   Clock::time_point deadline);
    static asio::awaitable<Result<Json>> run_command(std::shared_ptr<Impl> self,
                                                     std::string command, Json arguments,
                                                     Duration timeout, int fd, std::string context);
    static asio::awaitable<void> read_loop(std::shared_ptr<Impl> self);
    static asio::awaitable<void> write_loop(std::shared_ptr<Impl> self);
    asio::awaitable<boost::system::error_code> write_one(Outgoing& out);

    template <typename Coroutine>
    void spawn(Coroutine coroutine);
    void enqueue(Outgoing out);
    void forget(const std::string& id, const Pending* pending);
    void on_read_error(const boost::system::error_code& ec);
    void on_line(const std::string& line);
    void on_reply(detail::Reply reply);
    void protocol_failure(std::string message) {
        teardown(make_error(Errc::protocol, std::move(message)));
    }
    void teardown(Error why);
    Error state_error(std::string_view operation, std::string_view required,
                      std::string context) const {
        return make_error(Errc::state,
                          fmt::format("{} needs the QMP connection {}, but it is {}", operation,
                                      required, to_string(state_)),
                          std::move(context));
    }

    asio::any_io_executor executor_;
    ClientOptions options_;
    State state_ = State::idle;
    Socket socket_;
    detail::LineFramer framer_;
    std::optional<Json> greeting_;
    asio::steady_timer greeting_signal_;  // cancelled when the greeting or the end arrives
    std::optional<Error> close_error_;    // why the connection ended
    std::unordered_map<std::string, std::shared_ptr<Pending>> pending_;
    std::deque<std::string> timed_out_order_;
    std::unordered_set<std::string> timed_out_;
    std::deque<Outgoing> write_queue_;
    bool writing_ = false;
    std::uint64_t last_id_ = 0;
    Stats stats_;
    detail::ListenerSet listeners_;
};

template <typename Coroutine>
void Client::Impl::spawn(Coroutine coroutine) {
    std::weak_ptr<Impl> weak = weak_from_this();
    qshim::detail::spawn(
        executor_, std::move(coroutine), "a QMP connection coroutine",
        [weak](const std::string& what) {
            if (auto self = weak.lock())
                self->teardown(make_error(Errc::internal, "the QMP connection failed: " + what));
        });
}

asio::awaitable<Result<Json>> Client::Impl::connect_fd(std::shared_ptr<Impl> self, int fd) {
    std::string context = fmt::format("connecting to QMP on fd {}", fd);
    try {
        if (fd < 0) co_return make_error(Errc::io, "not a file descriptor", context);
        if (self->state_ != State::idle) {
            ::close(fd);  // ownership was handed over even though the call is refused
            co_return self->state_error("connect", "idle (a client connects once)", context);
        }
        const auto deadline = detail::deadline_after(self->options_.connect_timeout);
        self->state_ = State::connecting;
        boost::system::error_code ec;
        self->socket_.assign(asio::local::stream_protocol(), fd, ec);
        if (ec) {
            ::close(fd);
            self->teardown(
                make_error(Errc::io, "cannot use the fd as a unix stream socket: " + ec.message()));
            co_return with_context(*self->close_error_, context);
        }
        co_return co_await handshake(self, std::move(context), deadline);
    } catch (const std::exception& e) {
        self->teardown(make_error(Errc::internal, e.what()));
        co_return make_error(Errc::internal, e.what(), context);
    }
}

asio::awaitable<Result<Json>> Client::Impl::connect_path(std::shared_ptr<Impl> self,
                                                         std::string path) {
    std::string context = fmt::format("connecting to QMP at {}", path);
    try {
        if (self->state_ != State::idle)
            co_return self->state_error("connect", "idle (a client connects once)", context);
        const auto deadline = detail::deadline_after(self->options_.connect_timeout);
        self->state_ = State::connecting;
        // connect() on a unix socket only blocks when the listener's backlog is full; the
        // deadline still bounds it.
        asio::steady_timer timer(self->executor_);
        timer.expires_at(deadline);
        std::weak_ptr<Impl> weak = self;
        // An expiry already queued when the connect completes must not cancel the reader's reads.
        auto connect_done = std::make_shared<bool>(false);
        timer.async_wait([weak, connect_done](const boost::system::error_code& ec) {
            if (auto impl = weak.lock(); impl && !ec && !*connect_done) impl->socket_.cancel();
        });
        auto [ec] = co_await self->socket_.async_connect(
            asio::local::stream_protocol::endpoint(path), use_tuple);
        *connect_done = true;
        timer.cancel();
        if (self->state_ == State::disconnected)
            co_return with_context(*self->close_error_, context);
        if (ec == asio::error::operation_aborted) {
            self->teardown(make_error(
                Errc::timeout,
                fmt::format("no connection within {} ms", self->options_.connect_timeout.count())));
            co_return with_context(*self->close_error_, context);
        }
        if (ec) {
            self->teardown(make_error(Errc::io, ec.message()));
            co_return with_context(*self->close_error_, context);
        }
        co_return co_await handshake(self, std::move(context), deadline);
    } catch (const std::exception& e) {
        self->teardown(make_error(Errc::internal, e.what()));
        co_return make_error(Errc::internal, e.what(), context);
    }
}

asio::awaitable<Result<Json>> Client::Impl::handshake(std::shared_ptr<Impl> self,
                                                      std::string context,
                                                      Clock::time_point deadline) {
    self->spawn(read_loop(self));
    if (!self->greeting_ && self->state_ == State::connecting) {
        self->greeting_signal_.expires_at(deadline);
        co_await self->greeting_signal_.async_wait(use_tuple);
    }
    if (self->state_ == State::disconnected) co_return with_context(*self->close_error_, context);
    if (!self->greeting_ && Clock::now() < deadline) {
        self->teardown(
            make_error(Errc::interrupted, "the wait for the QMP greeting was cancelled"));
        co_return with_context(*self->close_error_, context);
    }
    if (!self->greeting_) {
        self->teardown(make_error(
            Errc::timeout,
            fmt::format("no QMP greeting within {} ms", self->options_.connect_timeout.count())));
        co_return with_context(*self->close_error_, context);
    }
    auto caps = co_await run_command(self, "qmp_capabilities", Json::object(), remaining(deadline),
                                     -1, "executing qmp_capabilities");
    if (!caps) {
        self->teardown(caps.error());
        co_return with_context(std::move(caps).error(), context);
    }
    // The reply may have come in one read with a fatal line after it.
    if (self->state_ != State::connecting) co_return with_context(*self->close_error_, context);
    self->state_ = State::running;
    co_return *self->greeting_;
}

asio::awaitable<Result<Json>> Client::Impl::execute(std::shared_ptr<Impl> self, std::string command,
                                                    Json arguments, std::optional<Duration> timeout,
                                                    std::optional<int> fd) {
    std::string context = "executing " + command;
    try {
        if (self->state_ != State::running)
            co_return self->state_error(command, "running", context);
        if (fd && *fd < 0)
            co_return make_error(Errc::io, fmt::format("{} is not a file descriptor", *fd),
                                 context);
        co_return co_await run_command(self, std::move(command), std::move(arguments),
                                       timeout.value_or(self->options_.command_timeout),
                                       fd.value_or(-1), std::move(context));
    } catch (const std::exception& e) {
        co_return make_error(Errc::internal, e.what(), context);
    }
}

asio::awaitable<Result<Json>> Client::Impl::run_command(std::shared_ptr<Impl> self,
                                                        std::string command, Json arguments,
                                                        Duration timeout, int fd,
                                                        std::string context) {
    std::string id = fmt::format("qshim-{}", ++self->last_id_);
    Json message = {{"execute", command}, {"id", id}};
    if (!arguments.is_null() && !(arguments.is_object() && arguments.empty()))
        message["arguments"] = std::move(arguments);
    std::string bytes;
    try {
        bytes = message.dump();
    } catch (const Json::exception& e) {
        // Only invalid UTF-8 gets here, and QMP has no way to carry it.
        co_return make_error(Errc::unsupported,
                             fmt::format("the arguments are not valid QMP JSON: {}", e.what()),
                             context);
    }
    bytes += '\n';
    qshim::detail::UniqueFd fd_copy;
    if (fd >= 0) {
        fd_copy = qshim::detail::UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!fd_copy)
            co_return make_error(
                Errc::io, fmt::format("cannot duplicate fd {}: {}", fd, std::strerror(errno)),
                context);
    }

    auto pending = std::make_shared<Pending>(self->executor_, command);
    pending->signal.expires_after(timeout);
    self->pending_.emplace(id, pending);
    PendingGuard guard{*self, id, pending.get()};
    self->enqueue(Outgoing{id, std::move(bytes), std::move(fd_copy)});
    if (!pending->result) co_await pending->signal.async_wait(use_tuple);
    if (pending->result) co_return std::move(*pending->result);
    // No result: the deadline passed, or whoever awaits us cancelled the wait.
    if (Clock::now() >= pending->signal.expiry())
        co_return make_error(Errc::timeout, fmt::format("no reply within {} ms", timeout.count()),
                             context);
    co_return make_error(Errc::interrupted, "the wait for the reply was cancelled", context);
}

void Client::Impl::forget(const std::string& id, const Pending* pending) {
    auto it = pending_.find(id);
    if (it == pending_.end() || it->second.get() != pending) return;  // answered or torn down
    pending_.erase(it);
    // Never sent: drop it, so a command that timed out in our queue does not run later.
    auto queued = std::find_if(write_queue_.begin(), write_queue_.end(),
                               [&](const Outgoing& out) { return out.id == id; });
    if (queued != write_queue_.end()) {
        write_queue_.erase(queued);
        return;
    }
    timed_out_.insert(id);
    timed_out_order_.push_back(id);
    if (timed_out_order_.size() > max_remembered_timeouts) {
        timed_out_.erase(timed_out_order_.front());
        timed_out_order_.pop_front();
    }
}

void Client::Impl::enqueue(Outgoing out) {
    write_queue_.push_back(std::move(out));
    if (writing_) return;
    writing_ = true;
    spawn(write_loop(shared_from_this()));
}

asio::awaitable<void> Client::Impl::write_loop(std::shared_ptr<Impl> self) {
    // The only writer: messages go out whole and in order, however many callers are waiting.
    try {
        while (!self->write_queue_.empty() && self->state_ != State::disconnected) {
            Outgoing out = std::move(self->write_queue_.front());
            self->write_queue_.pop_front();
            ++self->stats_.commands_sent;
            auto ec = co_await self->write_one(out);
            if (self->state_ == State::disconnected) break;
            if (ec == asio::error::broken_pipe || ec == asio::error::connection_reset) {
                self->teardown(make_error(Errc::interrupted, "QEMU closed the QMP connection"));
                break;
            }
            if (ec) {
                self->teardown(make_error(Errc::io, "writing to the QMP socket: " + ec.message()));
                break;
            }
        }
    } catch (...) {
        self->writing_ = false;
        throw;
    }
    self->writing_ = false;
}

asio::awaitable<boost::system::error_code> Client::Impl::write_one(Outgoing& out) {
    std::string_view rest = out.bytes;
    while (out.fd) {
        auto [ec] = co_await socket_.async_wait(Socket::wait_write, use_tuple);
        if (ec) co_return ec;
        std::error_code sent_ec;
        std::size_t n = detail::send_with_fd(socket_.native_handle(), rest, out.fd.get(), sent_ec);
        if (sent_ec == std::errc::resource_unavailable_try_again) continue;
        if (sent_ec)
            co_return boost::system::error_code(sent_ec.value(), boost::system::system_category());
        rest.remove_prefix(n);
        out.fd.reset();
    }
    auto [ec, n] =
        co_await asio::async_write(socket_, asio::buffer(rest.data(), rest.size()), use_tuple);
    co_return ec;
}

asio::awaitable<void> Client::Impl::read_loop(std::shared_ptr<Impl> self) {
    // The only reader: replies, events and the greeting all come through here, in order.
    std::vector<char> buffer(read_chunk_bytes);
    std::string line;
    while (self->state_ != State::disconnected) {
        auto [ec, n] = co_await self->socket_.async_read_some(asio::buffer(buffer), use_tuple);
        if (self->state_ == State::disconnected) co_return;
        if (ec) {
            self->on_read_error(ec);
            co_return;
        }
        self->framer_.append(std::string_view(buffer.data(), n));
        for (;;) {
            auto status = self->framer_.next(line);
            if (status == detail::LineFramer::Status::incomplete) break;
            if (status == detail::LineFramer::Status::too_long) {
                self->protocol_failure(fmt::format("a QMP message is larger than {} bytes",
                                                   self->options_.max_message_bytes));
                co_return;
            }
            self->on_line(line);
            if (self->state_ == State::disconnected) co_return;
        }
    }
}

void Client::Impl::on_read_error(const boost::system::error_code& ec) {
    if (ec == asio::error::eof && framer_.pending_bytes() > 0)
        protocol_failure(
            fmt::format("the connection closed in the middle of a message ({} bytes of it)",
                        framer_.pending_bytes()));
    else if (ec == asio::error::eof || ec == asio::error::connection_reset)
        teardown(make_error(Errc::interrupted, "QEMU closed the QMP connection"));
    else
        teardown(make_error(Errc::io, "reading from the QMP socket: " + ec.message()));
}

void Client::Impl::on_line(const std::string& line) {
    auto parsed = detail::parse_message(line, !greeting_);
    if (auto* failure = std::get_if<detail::ProtocolError>(&parsed))
        return protocol_failure(std::move(failure->message));
    if (auto* greeting = std::get_if<detail::Greeting>(&parsed)) {
        greeting_ = std::move(greeting->qmp);
        greeting_signal_.cancel();
        return;
    }
    if (auto* event = std::get_if<Event>(&parsed)) return listeners_.deliver(*event);
    on_reply(std::get<detail::Reply>(std::move(parsed)));
}

void Client::Impl::on_reply(detail::Reply reply) {
    auto it = pending_.find(reply.id);
    if (it == pending_.end()) {
        if (timed_out_.erase(reply.id) > 0)
            ++stats_.late_replies;
        else
            ++stats_.unknown_replies;
        return;
    }
    std::optional<Result<Json>> result;
    if (auto* malformed = std::get_if<detail::ProtocolError>(&reply.outcome))
        return protocol_failure(std::move(malformed->message));
    if (auto* error = std::get_if<detail::ReplyError>(&reply.outcome)) {
        Error e = make_error(Errc::qmp, std::move(error->desc), "executing " + it->second->command);
        e.qmp_class = std::move(error->cls);
        result.emplace(std::move(e));
    } else {
        result.emplace(std::move(std::get<Json>(reply.outcome)));
    }
    auto pending = std::move(it->second);
    pending_.erase(it);
    pending->result = std::move(result);
    pending->signal.cancel();
}

void Client::Impl::teardown(Error why) {
    if (state_ == State::disconnected) return;
    state_ = State::disconnected;
    close_error_ = why;
    boost::system::error_code ignored;
    socket_.close(ignored);  // the reader and writer wake with operation_aborted and stop
    write_queue_.clear();
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) {
        p->result.emplace(with_context(why, "executing " + p->command));
        p->signal.cancel();
    }
    timed_out_.clear();
    timed_out_order_.clear();
    greeting_signal_.cancel();
    listeners_.close_all();
}

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), options)) {}

Client::~Client() { impl_->close(); }

asio::awaitable<Result<Json>> Client::connect_fd(int fd) { return Impl::connect_fd(impl_, fd); }

asio::awaitable<Result<Json>> Client::connect_path(std::string path) {
    return Impl::connect_path(impl_, std::move(path));
}

asio::awaitable<Result<Json>> Client::execute(std::string command, Json arguments,
                                              std::optional<Duration> timeout) {
    return Impl::execute(impl_, std::move(command), std::move(arguments), timeout, std::nullopt);
}

asio::awaitable<Result<Json>> Client::execute_with_fd(std::string command, Json arguments, int fd,
                                                      std::optional<Duration> timeout) {
    return Impl::execute(impl_, std::move(command), std::move(arguments), timeout, fd);
}

std::shared_ptr<EventListener> Client::listen(EventFilter filter, std::size_t capacity) {
    return impl_->listen(std::move(filter), capacity);
}

void Client::close() { impl_->close(); }
State Client::state() const { return impl_->state(); }
std::optional<Error> Client::close_reason() const { return impl_->close_reason(); }
Client::Stats Client::stats() const { return impl_->stats(); }

}  // namespace qshim::qmp
