// A manual-reset event for coroutines on one executor: wait with a deadline until set().
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace qshim::detail {

class AsyncEvent {
  public:
    explicit AsyncEvent(const boost::asio::any_io_executor& ex)
        : signal_(ex, boost::asio::steady_timer::time_point::max()) {}

    void set() {
        set_ = true;
        signal_.cancel();  // wakes every waiter
    }
    bool is_set() const { return set_; }

    // True when set, false when the deadline passed first.
    boost::asio::awaitable<bool> wait(std::chrono::steady_clock::duration timeout) {
        using namespace boost::asio::experimental::awaitable_operators;
        constexpr auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
        if (set_) co_return true;
        boost::asio::steady_timer deadline(signal_.get_executor(), timeout);
        co_await (signal_.async_wait(token) || deadline.async_wait(token));
        co_return set_;
    }

    boost::asio::awaitable<void> wait() {
        constexpr auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
        while (!set_) co_await signal_.async_wait(token);
    }

  private:
    boost::asio::steady_timer signal_;
    bool set_ = false;
};

}  // namespace qshim::detail
