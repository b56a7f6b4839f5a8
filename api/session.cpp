// One control API connection: who may talk, the keep-alive request loop, and the event stream.
#include "api/session.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <qshim/log.hpp>

#include "api/console.hpp"
#include "api/event_queue.hpp"
#include "api/handlers.hpp"
#include "api/json.hpp"
#include "api/routes.hpp"
#include "api/socket.hpp"
#include "common/json_yaml.hpp"

namespace qshim::api {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace asio::experimental::awaitable_operators;
using Stream = ApiStream;
using Request = http::request<http::string_body>;
using Ms = std::chrono::milliseconds;

constexpr auto token = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t header_limit = 16 * 1024;
constexpr std::size_t body_limit = 1 << 20;  // a device is a few hundred bytes
constexpr Ms reject_timeout{5'000};          // a refused client gets no more of our time

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

// Keeps the connection in ServerContext::closers for exactly as long as it lives.
class Registration {
  public:
    Registration(ServerContext& ctx, std::function<void()> closer) : ctx_(ctx), id_(ctx.next_id++) {
        ctx_.closers.emplace(id_, std::move(closer));
    }
    ~Registration() { ctx_.closers.erase(id_); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

  private:
    ServerContext& ctx_;
    std::uint64_t id_;
};

void close(Stream& stream) {
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::socket_base::shutdown_send, ignored);
    stream.close();
}

// The answer owed for a request that could not be read; nullopt when the client just went away
// (closed, timed out, or the server closed it) and there is no one to answer.
std::optional<Response> read_error(const boost::system::error_code& ec) {
    if (ec == http::error::body_limit)
        return error_response(413, "payload_too_large",
                              fmt::format("the request body exceeds {} bytes", body_limit));
    if (ec == http::error::header_limit)
        return error_response(431, "headers_too_large",
                              fmt::format("the request headers exceed {} bytes", header_limit));
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
    if (ec.category() == http::make_error_code(http::error::bad_method).category())
        return error_response(400, "bad_request", "malformed HTTP request: " + ec.message());
    return std::nullopt;
}

Response internal_error(const char* what) {
    return error_response(make_error(Errc::internal, std::string("unexpected exception: ") + what,
                                     "serving an API request"));
}

Response refused(uid_t peer) {
    const uid_t self = geteuid();
    std::string who = self == 0 ? std::string("root") : fmt::format("uid {} and root", self);
    return error_response(403, "forbidden",
                          fmt::format("uid {} may not use this API: only {} may", peer, who));
}

Response busy(std::size_t limit) {
    return error_response(
        503, "busy", fmt::format("too many API connections (limit {}); try again later", limit));
}

std::string render(EventQueue::Batch batch, const std::string& vm_name) {
    std::string data;
    if (batch.dropped)
        data += qshim::detail::dump_lossy(dropped_notice(vm_name, batch.dropped)) + "\n";
    for (auto& line : batch.lines) data += line + "\n";
    return data;
}

struct Incoming {
    std::optional<Request> request;
    std::optional<Response> error;  // what to answer when there is no request
};

asio::awaitable<Incoming> read_request(Stream& stream, beast::flat_buffer& buffer, Ms timeout,
                                       bool headers_only) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(header_limit);
    parser.body_limit(body_limit);
    Incoming in;
    stream.expires_after(timeout);  // one deadline for the whole request: a slow drip gains nothing
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, token);
    if (!ec && !headers_only && !parser.is_done()) {
        if (parser.get().version() >= 11 &&
            beast::iequals(parser.get()[http::field::expect], "100-continue")) {
            // curl waits for this before sending a body over 1 KiB.
            http::response<http::empty_body> go(http::status::continue_, 11);
            auto [wec, wn] = co_await http::async_write(stream, go, token);
            ec = wec;
        }
        if (!ec) {
            auto [rec, rn] = co_await http::async_read(stream, buffer, parser, token);
            ec = rec;
        }
    }
    if (ec) {
        in.error = read_error(ec);
        co_return in;
    }
    in.request = parser.release();
    co_return in;
}

asio::awaitable<bool> write_response(Stream& stream, Response resp, unsigned version,
                                     bool keep_alive, Ms timeout) {
    http::response<http::string_body> res;
    res.version(version);
    res.result(resp.status);
    res.set(http::field::content_type, "application/json");
    if (!resp.allow.empty()) res.set(http::field::allow, resp.allow);
    res.keep_alive(keep_alive);
    res.body() = std::move(resp.body);
    res.prepare_payload();
    stream.expires_after(timeout);
    auto [ec, n] = co_await http::async_write(stream, res, token);
    co_return !ec;
}

// Answers a client we will not serve, after reading its request head, so its send never races
// our close and it sees the reason rather than a reset.
asio::awaitable<void> reject(Stream& stream, Response resp) {
    beast::flat_buffer buffer;
    auto in = co_await read_request(stream, buffer, reject_timeout, true);
    unsigned version = in.request ? in.request->version() : 11;
    co_await write_response(stream, std::move(resp), version, false, reject_timeout);
    close(stream);
}

asio::awaitable<Response> dispatch(Vm& vm, const Route& route, std::string body) {
    try {
        co_return co_await handle(vm, route, std::move(body));
    } catch (const std::exception& e) {
        // Our code reports errors as values; an exception here is a bug, answered as one.
        co_return internal_error(e.what());
    }
}

// GET /v1/events: one JSON line per lifecycle event until the server stops or the client leaves.
// `end_hook` is what stop() calls to end the stream.
asio::awaitable<void> stream_events(ServerContext& ctx, Stream& stream, unsigned version,
                                    std::function<void()>& end_hook) {
    const Ms timeout = ctx.options.read_timeout;
    const std::string vm_name = ctx.vm.spec().name;
    EventQueue queue(ctx.options.event_queue);
    asio::steady_timer wake(co_await asio::this_coro::executor,
                            asio::steady_timer::time_point::max());
    bool ending = false;
    // The sink only queues and wakes: the Vm never waits for a client.
    std::optional<std::size_t> sub = ctx.vm.subscribe([&queue, &wake](const nlohmann::json& e) {
        queue.push(qshim::detail::dump_lossy(e));
        wake.cancel();
    });
    auto unsubscribe = [&ctx, &sub] {
        if (sub) ctx.vm.unsubscribe(*sub);
        sub.reset();
    };
    end_hook = [&] {
        ending = true;
        unsubscribe();  // at once, so the Vm holds no sink into this frame after stop()
        wake.cancel();
    };
    // However the stream ends (including an exception), the Vm must let go of the sink.
    class Cleanup {
      public:
        Cleanup(std::function<void()>& hook, std::function<void()> last)
            : hook_(hook), last_(std::move(last)) {}
        ~Cleanup() {
            hook_ = nullptr;
            last_();
        }

      private:
        std::function<void()>& hook_;
        std::function<void()> last_;
    };
    Cleanup cleanup(end_hook, unsubscribe);

    http::response<http::empty_body> res;
    res.version(version);
    res.result(http::status::ok);
    res.set(http::field::content_type, "application/x-ndjson");
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(false);               // the stream is the rest of the connection
    const bool chunked = version >= 11;  // an HTTP/1.0 client reads until close instead
    res.chunked(chunked);
    http::response_serializer<http::empty_body> serializer(res);
    stream.expires_after(timeout);
    auto [hec, hn] = co_await http::async_write_header(stream, serializer, token);
    if (hec) co_return;

    bool client_gone = false;
    for (;;) {
        if (!queue.empty()) {
            std::string data = render(queue.take(), vm_name);
            // A reader that takes nothing for a whole timeout is dropped; until then its lines
            // wait in the bounded queue.
            stream.expires_after(timeout);
            boost::system::error_code wec;
            if (chunked)
                std::tie(wec, std::ignore) =
                    co_await asio::async_write(stream, http::make_chunk(asio::buffer(data)), token);
            else
                std::tie(wec, std::ignore) =
                    co_await asio::async_write(stream, asio::buffer(data), token);
            if (wec) {
                client_gone = true;
                break;
            }
            continue;
        }
        if (ending || ctx.stopped) break;
        auto woke = co_await (wake.async_wait(token) ||
                              stream.socket().async_wait(asio::socket_base::wait_read, token));
        if (woke.index() == 1) {
            // Readable: the client hung up (or wrote, which it should not; discarded).
            char scratch[512];
            stream.expires_after(timeout);
            auto [rec, rn] = co_await stream.async_read_some(asio::buffer(scratch), token);
            if (rec) {
                client_gone = true;
                break;
            }
        }
    }
    if (!client_gone && chunked) {
        stream.expires_after(reject_timeout);
        co_await asio::async_write(stream, http::make_chunk_last(), token);
    }
}

}  // namespace

asio::awaitable<void> serve_connection(std::shared_ptr<ServerContext> ctx,
                                       asio::local::stream_protocol::socket socket) {
    Stream stream(std::move(socket));
    const Ms timeout = ctx->options.read_timeout;
    auto uid = peer_uid(stream.socket().native_handle());
    if (!uid) {
        log::write("api", log::Level::warn, uid.error().what());
        co_return;
    }
    if (!peer_allowed(*uid, geteuid())) {
        log::write("api", log::Level::warn, fmt::format("refused an API client with uid {}", *uid));
        co_await reject(stream, refused(*uid));
        co_return;
    }
    if (ctx->stopped) co_return;
    if (ctx->closers.size() >= ctx->options.max_connections) {
        co_await reject(stream, busy(ctx->options.max_connections));
        co_return;
    }

    bool reading = false;  // between requests a connection can be closed without losing anything
    std::function<void()> end_events;
    Registration registration(*ctx, [&] {
        if (end_events)
            end_events();
        else if (reading)
            stream.close();
    });
    beast::flat_buffer buffer;
    for (;;) {
        // stop() may have come while we were writing, when there was no read for it to cancel.
        if (ctx->stopped) break;
        reading = true;
        Incoming in = co_await read_request(stream, buffer, timeout, false);
        reading = false;
        if (ctx->stopped) break;
        if (!in.request) {
            if (in.error) co_await write_response(stream, std::move(*in.error), 11, false, timeout);
            break;
        }
        Request& req = *in.request;
        Route r = route(sv(req.method_string()), sv(req.target()));
        if (r.outcome == Route::Outcome::ok && r.endpoint == Endpoint::events) {
            log::write("api", log::Level::debug, "event stream opened");
            co_await stream_events(*ctx, stream, req.version(), end_events);
            break;
        }
        if (r.outcome == Route::Outcome::ok && r.endpoint == Endpoint::console) {
            co_await serve_console(*ctx, stream, req, buffer, end_events);
            break;
        }
        Response resp;
        if (r.outcome == Route::Outcome::ok)
            resp = co_await dispatch(ctx->vm, r, std::move(req.body()));
        else
            resp = route_error(r);
        log::write(
            "api", log::Level::debug,
            fmt::format("{} {} -> {}", sv(req.method_string()), sv(req.target()), resp.status));
        const bool keep = req.keep_alive() && !ctx->stopped;
        if (!co_await write_response(stream, std::move(resp), req.version(), keep, timeout) ||
            !keep)
            break;
    }
    close(stream);
}

}  // namespace qshim::api
