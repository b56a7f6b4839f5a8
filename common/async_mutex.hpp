// A coroutine mutex for one executor: waiters are served in order, ownership handed over directly.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>

#include "common/async_event.hpp"

namespace qshim::detail {

class AsyncMutex {
  public:
    explicit AsyncMutex(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

    class Guard {
      public:
        explicit Guard(AsyncMutex* m) : m_(m) {}
        Guard(Guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
        Guard& operator=(Guard&&) = delete;
        ~Guard() {
            if (m_) m_->unlock();
        }

      private:
        AsyncMutex* m_;
    };

    boost::asio::awaitable<Guard> lock() {
        if (!locked_) {
            locked_ = true;
            co_return Guard(this);
        }
        auto turn = std::make_shared<AsyncEvent>(ex_);
        waiters_.push_back(turn);
        // If the wait is cancelled (or the frame destroyed) the turn must not be lost: a turn
        // handed to a waiter that is gone would keep the mutex locked forever.
        struct Abandon {
            AsyncMutex* m;
            std::shared_ptr<AsyncEvent> turn;
            bool taken = false;
            ~Abandon() {
                if (taken) return;
                if (turn->is_set())
                    m->unlock();  // the lock was ours already: pass it on
                else
                    std::erase(m->waiters_, turn);
            }
        } abandon{this, turn};
        co_await turn->wait();
        abandon.taken = true;
        co_return Guard(this);  // unlock() handed the lock to us: locked_ is still true
    }

  private:
    void unlock() {
        if (waiters_.empty()) {
            locked_ = false;
            return;
        }
        auto next = std::move(waiters_.front());
        waiters_.pop_front();
        next->set();
    }

    boost::asio::any_io_executor ex_;
    bool locked_ = false;
    std::deque<std::shared_ptr<AsyncEvent>> waiters_;
};

}  // namespace qshim::detail
