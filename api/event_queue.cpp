// The bounded event queue behind GET /v1/events.
#include "api/event_queue.hpp"

#include <iterator>

namespace qshim::api {

void EventQueue::push(std::string line) {
    if (lines_.size() >= capacity_) {
        lines_.pop_front();
        ++dropped_;
        ++dropped_total_;
    }
    lines_.push_back(std::move(line));
}

EventQueue::Batch EventQueue::take() {
    Batch b;
    b.lines.assign(std::make_move_iterator(lines_.begin()), std::make_move_iterator(lines_.end()));
    b.dropped = dropped_;
    lines_.clear();
    dropped_ = 0;
    return b;
}

}  // namespace qshim::api
