// Internal: the bounded per-listener event queues and the set the client fans events out to.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <qshim/qmp.hpp>
#include <vector>

namespace qshim::qmp::detail {

// now + timeout, saturating: a caller may pass Duration::max() to mean "no deadline".
inline std::chrono::steady_clock::time_point deadline_after(Duration timeout) {
    auto now = std::chrono::steady_clock::now();
    auto room =
        std::chrono::duration_cast<Duration>(std::chrono::steady_clock::time_point::max() - now);
    return timeout >= room ? std::chrono::steady_clock::time_point::max() : now + timeout;
}

// One listener's queue. Bound to the client's executor like the client itself.
class QueueListener final : public EventListener,
                            public std::enable_shared_from_this<QueueListener> {
  public:
    QueueListener(boost::asio::any_io_executor executor, EventFilter filter, std::size_t capacity);

    boost::asio::awaitable<Result<Event>> next(Duration timeout) override;
    std::optional<Event> try_next() override;
    std::size_t size() const override { return queue_.size(); }
    std::size_t dropped() const override { return dropped_; }

    // A filter predicate that throws is treated as "no match": the reader must not die of it.
    bool matches(const Event& event) const;
    void push(const Event& event);
    // The connection ended: queued events stay readable, then next() fails with interrupted.
    void close();

  private:
    static boost::asio::awaitable<Result<Event>> wait_next(std::shared_ptr<QueueListener> self,
                                                           Duration timeout);
    void wake_all();

    boost::asio::any_io_executor executor_;
    EventFilter filter_;
    std::size_t capacity_;
    std::deque<Event> queue_;
    std::size_t dropped_ = 0;
    bool closed_ = false;
    // Timers of next() calls now waiting; cancelling one wakes its caller to look again.
    std::list<boost::asio::steady_timer*> waiters_;
};

// The client's listeners, held weakly: a listener its owner dropped costs nothing and is pruned.
class ListenerSet {
  public:
    std::shared_ptr<EventListener> add(boost::asio::any_io_executor executor, EventFilter filter,
                                       std::size_t capacity, bool closed);
    void deliver(const Event& event);
    void close_all();

  private:
    std::vector<std::shared_ptr<QueueListener>> live();

    std::vector<std::weak_ptr<QueueListener>> listeners_;
};

}  // namespace qshim::qmp::detail
