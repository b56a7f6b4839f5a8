// A bounded queue of event lines for one event-stream client: a slow reader loses the oldest
// lines (counted), never blocks the VM that produces them.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

namespace qshim::api {

// Not thread-safe: producer and consumer share one executor.
class EventQueue {
  public:
    explicit EventQueue(std::size_t capacity = 1024) : capacity_(capacity ? capacity : 1) {}

    // Appends a line; when full, the oldest line goes and is counted as dropped.
    void push(std::string line);

    struct Batch {
        std::vector<std::string> lines;  // oldest first
        std::size_t dropped = 0;         // lost since the previous take(), before `lines`
    };
    // Everything queued, and the drop count since the previous take (then reset).
    Batch take();

    bool empty() const { return lines_.empty() && dropped_ == 0; }
    std::size_t size() const { return lines_.size(); }
    std::size_t dropped_total() const { return dropped_total_; }

  private:
    std::size_t capacity_;
    std::deque<std::string> lines_;
    std::size_t dropped_ = 0;
    std::size_t dropped_total_ = 0;
};

}  // namespace qshim::api
