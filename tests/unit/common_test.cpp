// The coroutine primitives every supervisor and hotplug path waits on.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "common/async_event.hpp"
#include "common/async_mutex.hpp"

using namespace qshim::detail;
namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("an AsyncEvent wakes every waiter, and a wait with a deadline reports which came first") {
    asio::io_context io;
    AsyncEvent event(io.get_executor());
    int woken = 0;
    bool timed_out_result = true;
    auto waiter = [&]() -> asio::awaitable<void> {
        if (co_await event.wait(10s)) ++woken;
    };
    asio::co_spawn(io, waiter(), asio::detached);
    asio::co_spawn(io, waiter(), asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            AsyncEvent never(io.get_executor());
            timed_out_result = co_await never.wait(10ms);
            event.set();
        },
        asio::detached);
    io.run_for(5s);
    CHECK(woken == 2);
    CHECK_FALSE(timed_out_result);
    CHECK(io.stopped());
}

TEST_CASE("an AsyncMutex survives a waiter that gives up: the lock is not lost") {
    using namespace asio::experimental::awaitable_operators;
    asio::io_context io;
    AsyncMutex mutex(io.get_executor());
    std::vector<std::string> order;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto held = co_await mutex.lock();
            order.push_back("first holds");
            asio::steady_timer t(io, 50ms);
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
            order.push_back("first releases");
        },
        asio::detached);
    // The impatient waiter races the lock against a short timer and loses.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer t(io, 10ms);
            auto r = co_await (mutex.lock() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
            order.push_back(r.index() == 1 ? "impatient gave up" : "impatient got it");
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer t(io, 20ms);
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
            auto held = co_await mutex.lock();
            order.push_back("third holds");
        },
        asio::detached);
    io.run_for(5s);
    CHECK(order == std::vector<std::string>{"first holds", "impatient gave up", "first releases",
                                            "third holds"});
}
