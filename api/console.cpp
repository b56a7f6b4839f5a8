// serve_console(): one client on the guest's serial console, after an HTTP upgrade.
#include "api/console.hpp"

#include <fmt/format.h>
#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <qshim/log.hpp>
#include <string>

#include "api/json.hpp"

namespace qshim::api {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace asio::experimental::awaitable_operators;

constexpr auto token = asio::as_tuple(asio::use_awaitable);
// Output a slow client has not taken yet; past this the oldest is dropped (a console is lossy
// for a reader that does not keep up; the guest never waits for one).
constexpr std::size_t max_pending = 256 * 1024;
constexpr const char* protocol = "qshim-console";

// Whether the peer of a unix stream socket closed altogether (not just its sending side).
bool hung_up(int fd) {
    pollfd p{fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

asio::awaitable<void> answer(ApiStream& stream, Response resp, unsigned version,
                             std::chrono::milliseconds timeout) {
    http::response<http::string_body> res;
    res.version(version);
    res.result(resp.status);
    res.set(http::field::content_type, "application/json");
    res.keep_alive(false);
    res.body() = std::move(resp.body);
    res.prepare_payload();
    stream.expires_after(timeout);
    co_await http::async_write(stream, res, token);
}

}  // namespace

asio::awaitable<void> serve_console(ServerContext& ctx, ApiStream& stream,
                                    const http::request<http::string_body>& request,
                                    beast::flat_buffer& buffer, std::function<void()>& end_hook) {
    const auto timeout = ctx.options.read_timeout;
    if (!beast::iequals(request[http::field::upgrade], protocol)) {
        co_await answer(stream,
                        error_response(426, "upgrade_required",
                                       "the console is a byte stream: ask for it with "
                                       "'Connection: Upgrade' and 'Upgrade: qshim-console' "
                                       "(qshim ctl console does)"),
                        request.version(), timeout);
        co_return;
    }
    std::string pending;
    bool ended = false, ending = false, dropped = false;
    asio::steady_timer wake(co_await asio::this_coro::executor,
                            asio::steady_timer::time_point::max());
    auto attached = ctx.vm.attach_console(
        [&](std::string_view data) {
            pending.append(data);
            if (pending.size() > max_pending) {
                pending.erase(0, pending.size() - max_pending);
                dropped = true;
            }
            wake.cancel();
        },
        [&] {
            ended = true;
            wake.cancel();
        });
    if (!attached) {
        Error e = attached.error();
        int status = e.code == Errc::state ? 409 : 501;
        co_await answer(
            stream,
            error_response(status, e.code == Errc::state ? "busy" : "unsupported", e.message),
            request.version(), timeout);
        co_return;
    }
    // Whatever ends this (an exception too), the Vm lets go of the callbacks into this frame.
    // After stop() (`ending`) the Vm is never touched again: its owner may free it once the
    // server is stopped, while this coroutine still waits for a write.
    struct Detach {
        Vm& vm;
        std::size_t id;
        std::function<void()>& hook;
        bool& ending;
        ~Detach() {
            hook = nullptr;
            if (!ending) vm.detach_console(id);
        }
    } detach{ctx.vm, *attached, end_hook, ending};
    end_hook = [&] {
        ctx.vm.detach_console(*attached);  // at once: stop() may free the Vm next
        ending = true;
        wake.cancel();
    };

    http::response<http::empty_body> res;
    res.version(request.version());
    res.result(http::status::switching_protocols);
    res.set(http::field::connection, "Upgrade");
    res.set(http::field::upgrade, protocol);
    stream.expires_after(timeout);
    auto [hec, hn] = co_await http::async_write(stream, res, token);
    if (hec) co_return;
    log::write("api", log::Level::debug, "console attached");

    // Keys the client sent along with the request.
    if (buffer.size() > 0 && !ending) {
        std::string first(static_cast<const char*>(buffer.data().data()), buffer.size());
        buffer.consume(buffer.size());
        if (!co_await ctx.vm.write_console(std::move(first))) co_return;
    }
    bool input_open = true;  // the client may half-close: its input ends, our output goes on
    asio::steady_timer check(co_await asio::this_coro::executor);
    for (;;) {
        if (!pending.empty()) {
            std::string data;
            data.swap(pending);
            if (dropped) log::write("api", log::Level::debug, "console output dropped");
            dropped = false;
            // A reader that takes nothing for a whole timeout is dropped.
            stream.expires_after(timeout);
            auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(data), token);
            if (wec) break;
            continue;
        }
        if (ended || ending || ctx.stopped) break;
        // Waiting for the guest or the user: no deadline (a console may sit idle for hours).
        stream.expires_never();
        if (!input_open) {
            // The client half-closed (its input ended). One that then goes away altogether
            // hangs up: checked each second, since the epoll edge for it may already have gone
            // to the read that saw the end of input.
            check.expires_after(std::chrono::seconds(1));
            co_await (wake.async_wait(token) || check.async_wait(token));
            if (hung_up(stream.socket().native_handle())) break;
            continue;
        }
        auto woke = co_await (wake.async_wait(token) ||
                              stream.socket().async_wait(asio::socket_base::wait_read, token));
        if (woke.index() != 1) continue;
        char keys[4096];
        auto [rec, rn] = co_await stream.async_read_some(asio::buffer(keys), token);
        if (rec == asio::error::eof) {
            if (hung_up(stream.socket().native_handle())) break;  // gone, not half-closed
            input_open = false;
            continue;
        }
        if (rec) break;
        if (ending || ctx.stopped) break;
        if (!co_await ctx.vm.write_console(std::string(keys, rn))) break;
    }
    log::write("api", log::Level::debug, "console detached");
}

}  // namespace qshim::api
