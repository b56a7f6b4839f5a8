// The --events JSON-lines writer: never blocks the supervisor, however slow the reader.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace qshim::cli {

class EventWriter {
  public:
    explicit EventWriter(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
    ~EventWriter();

    // "-" for stdout, or a path opened for appending. False with errno set on failure.
    bool open(const std::string& target);
    void write(const nlohmann::json& event);
    // Supervision is over: stop waiting for the reader (a pending wait would keep the event
    // loop alive for as long as a stalled reader stalls).
    void stop_waiting();
    // At the end: gives a reader that is slow, but reading, a moment to take what is queued.
    void flush(std::chrono::milliseconds limit);

    // Bytes a slow pipe reader may have pending before the oldest lines are dropped.
    static constexpr std::size_t max_queued = 1 << 20;

  private:
    void start_flush();
    bool write_some();                // false once the reader has gone
    void note_file_write(int error);  // 0: a line was written whole

    boost::asio::any_io_executor ex_;
    int fd_ = -1;
    bool asynchronous_ = false;  // a pipe or socket: written without blocking
    bool use_send_ = false;      // a socket we share (stdout): send(MSG_DONTWAIT), flags untouched
    std::optional<boost::asio::posix::stream_descriptor> waiter_;  // our own pipe or file
    std::optional<boost::asio::steady_timer> retry_;               // a shared socket
    std::deque<std::string> queue_;  // lines not yet written; the front one maybe in part
    std::size_t written_of_front_ = 0;
    std::size_t queued_bytes_ = 0;
    std::size_t dropped_ = 0;
    bool waiting_ = false;
    bool stopped_ = false;
    bool gone_ = false;
    std::string target_;             // for messages
    std::size_t failed_writes_ = 0;  // lines lost in a row to a file that cannot take them
};

}  // namespace qshim::cli
