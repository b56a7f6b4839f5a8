// Event listeners: bounded queues with drop counting, waiting with deadlines, and wait_event.
#include "qmp/events.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace qshim::qmp {
namespace detail {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

QueueListener::QueueListener(asio::any_io_executor executor, EventFilter filter,
                             std::size_t capacity)
    : executor_(std::move(executor)),
      filter_(std::move(filter)),
      capacity_(std::max<std::size_t>(capacity, 1)) {}

asio::awaitable<Result<Event>> QueueListener::next(Duration timeout) {
    // A static coroutine holding a shared_ptr: the listener outlives the wait even if its owner
    // lets go while a next() is suspended.
    return wait_next(shared_from_this(), timeout);
}

asio::awaitable<Result<Event>> QueueListener::wait_next(std::shared_ptr<QueueListener> self,
                                                        Duration timeout) {
    try {
        const auto deadline = deadline_after(timeout);
        asio::steady_timer timer(self->executor_);
        for (;;) {
            if (auto event = self->try_next()) co_return std::move(*event);
            if (self->closed_)
                co_return make_error(Errc::interrupted, "the QMP connection closed",
                                     "waiting for an event");
            if (Clock::now() >= deadline)
                co_return make_error(Errc::timeout,
                                     fmt::format("no matching event within {} ms", timeout.count()),
                                     "waiting for an event");
            timer.expires_at(deadline);
            // Unregistered on every exit, including the frame's destruction by a dying io_context.
            struct Registration {
                std::list<asio::steady_timer*>& list;
                std::list<asio::steady_timer*>::iterator pos;
                ~Registration() { list.erase(pos); }
            } registration{self->waiters_, self->waiters_.insert(self->waiters_.end(), &timer)};
            // Woken by cancel() on push or close, or by expiry; either way the loop looks again.
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            // Unless whoever awaits us cancelled (e.g. the losing side of `||`): waiting again
            // would sit out the whole timeout, as the cancellation signal does not repeat.
            auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
            if (cancelled != asio::cancellation_type::none)
                co_return make_error(Errc::interrupted, "the wait for an event was cancelled",
                                     "waiting for an event");
        }
    } catch (const std::exception& e) {
        co_return make_error(Errc::internal, e.what(), "waiting for an event");
    }
}

std::optional<Event> QueueListener::try_next() {
    if (queue_.empty()) return std::nullopt;
    Event event = std::move(queue_.front());
    queue_.pop_front();
    return event;
}

bool QueueListener::matches(const Event& event) const {
    if (!filter_.names.empty() &&
        std::find(filter_.names.begin(), filter_.names.end(), event.name) == filter_.names.end())
        return false;
    if (!filter_.predicate) return true;
    try {
        return filter_.predicate(event);
    } catch (...) {
        return false;
    }
}

void QueueListener::push(const Event& event) {
    if (closed_) return;
    if (queue_.size() >= capacity_) {
        // Drop the oldest: a slow listener loses history, never blocks the connection.
        queue_.pop_front();
        ++dropped_;
    }
    queue_.push_back(event);
    wake_all();
}

void QueueListener::close() {
    closed_ = true;
    wake_all();
}

void QueueListener::wake_all() {
    for (auto* timer : waiters_) timer->cancel();
}

std::shared_ptr<EventListener> ListenerSet::add(asio::any_io_executor executor, EventFilter filter,
                                                std::size_t capacity, bool closed) {
    // Pruned here too, not only on delivery: on a quiet VM no event may come for months.
    std::erase_if(listeners_,
                  [](const std::weak_ptr<QueueListener>& weak) { return weak.expired(); });
    auto listener =
        std::make_shared<QueueListener>(std::move(executor), std::move(filter), capacity);
    if (closed)
        listener->close();
    else
        listeners_.push_back(listener);
    return listener;
}

std::vector<std::shared_ptr<QueueListener>> ListenerSet::live() {
    std::erase_if(listeners_,
                  [](const std::weak_ptr<QueueListener>& weak) { return weak.expired(); });
    std::vector<std::shared_ptr<QueueListener>> out;
    out.reserve(listeners_.size());
    for (auto& weak : listeners_)
        if (auto strong = weak.lock()) out.push_back(std::move(strong));
    return out;
}

void ListenerSet::deliver(const Event& event) {
    // A snapshot: a predicate may call back into the client (listen, close) while we iterate.
    for (auto& listener : live())
        if (listener->matches(event)) listener->push(event);
}

void ListenerSet::close_all() {
    auto listeners = live();
    listeners_.clear();
    for (auto& listener : listeners) listener->close();
}

}  // namespace detail

boost::asio::awaitable<Result<Event>> wait_event(EventListener& listener,
                                                 std::function<bool(const Event&)> match,
                                                 Duration timeout) {
    const auto deadline = detail::deadline_after(timeout);
    for (;;) {
        auto left =
            std::max(Duration(0), std::chrono::ceil<Duration>(deadline - detail::Clock::now()));
        // With no time left, next() still hands out what is already queued, then times out.
        auto event = co_await listener.next(left);
        if (!event && event.error().code == Errc::timeout)
            co_return make_error(Errc::timeout,
                                 fmt::format("no matching event within {} ms", timeout.count()),
                                 "waiting for an event");
        if (!event) co_return event;
        try {
            if (!match || match(*event)) co_return event;
        } catch (const std::exception& e) {
            co_return make_error(Errc::internal,
                                 fmt::format("the event matcher threw: {}", e.what()),
                                 "waiting for an event");
        }
    }
}

}  // namespace qshim::qmp
