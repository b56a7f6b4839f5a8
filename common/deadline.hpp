// Racing an asynchronous operation against a timer.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>

namespace qshim::detail {

// `op`'s result, or nullopt when `timeout` passes first; the loser of the race is cancelled
// (for a socket operation: the socket's pending operation ends with operation_aborted).
template <typename T>
boost::asio::awaitable<std::optional<T>> within(boost::asio::any_io_executor ex,
                                                std::chrono::milliseconds timeout,
                                                boost::asio::awaitable<T> op) {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer deadline(ex, timeout);
    auto r = co_await (std::move(op) ||
                       deadline.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
    if (r.index() == 0) co_return std::get<0>(std::move(r));
    co_return std::nullopt;
}

}  // namespace qshim::detail
