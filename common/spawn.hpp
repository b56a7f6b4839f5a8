// co_spawn for fire-and-forget coroutines that must never die silently.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <exception>
#include <qshim/log.hpp>
#include <string>

namespace qshim::detail {

// asio::detached drops a coroutine's exception on the floor, leaving whatever it was meant to
// finish waiting forever. This logs it instead (a bug by definition: our coroutines report
// errors as values) and calls `on_failure(message)` so the owner can stop waiting.
template <typename Executor, typename Awaitable, typename OnFailure>
void spawn(const Executor& ex, Awaitable&& a, const char* what, OnFailure on_failure) {
    boost::asio::co_spawn(ex, std::forward<Awaitable>(a), [what, on_failure](std::exception_ptr e) {
        if (!e) return;
        std::string message = "unknown exception";
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            message = x.what();
        } catch (...) {
        }
        log::write("internal", log::Level::error, std::string(what) + " failed: " + message);
        on_failure(message);
    });
}

template <typename Executor, typename Awaitable>
void spawn(const Executor& ex, Awaitable&& a, const char* what) {
    spawn(ex, std::forward<Awaitable>(a), what, [](const std::string&) {});
}

}  // namespace qshim::detail
