// EventWriter: lines to a file directly; to a pipe or socket without blocking, oldest dropped.
#include "cli/event_writer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <qshim/log.hpp>
#include <string>

namespace qshim::cli {

namespace asio = boost::asio;

EventWriter::~EventWriter() {
    waiter_.reset();  // owns a dup of fd_, closed with it
    if (fd_ >= 0) ::close(fd_);
}

bool EventWriter::open(const std::string& target) {
    target_ = target == "-" ? "stdout" : target;
    // A descriptor of our own, even for stdout, so closing or waiting on it touches nothing else.
    fd_ = target == "-" ? fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3)
                        : ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return false;
    struct stat st {};
    // Only pipes and sockets can stall on a reader that stops reading; files and terminals are
    // written directly, one write(2) per line (O_APPEND keeps lines whole).
    asynchronous_ = fstat(fd_, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    if (asynchronous_ && target == "-") {
        // stdout's open file description is shared with our caller (and QEMU): O_NONBLOCK on
        // it would change it for them too, and stay after we exit. A socket is written with
        // send(MSG_DONTWAIT), and a full one retried on a timer (asio's wait on it would set
        // O_NONBLOCK); a pipe is opened again through /proc, which gives a description of our
        // own (O_NONBLOCK: with no reader the open fails at once instead of waiting for one).
        if (S_ISSOCK(st.st_mode)) {
            use_send_ = true;
        } else {
            std::string self = "/proc/self/fd/" + std::to_string(STDOUT_FILENO);
            int own = ::open(self.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
            if (own >= 0) {
                ::close(fd_);
                fd_ = own;
            } else {
                // No /proc: stay blocking rather than change what others share.
                log::write("launcher", log::Level::warn,
                           "cannot reopen stdout without sharing its flags; events to it are "
                           "written blocking");
                asynchronous_ = false;
            }
        }
    }
    if (asynchronous_ && use_send_) {
        retry_.emplace(ex_);
    } else if (asynchronous_) {
        fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
        int watched = fcntl(fd_, F_DUPFD_CLOEXEC, 3);
        if (watched >= 0)
            waiter_.emplace(ex_, watched);
        else
            asynchronous_ = false;
    }
    return true;
}

void EventWriter::write(const nlohmann::json& event) {
    if (fd_ < 0 || gone_) return;
    // Lossy: an event naming something that is not valid UTF-8 is still written.
    std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (!asynchronous_) {
        ssize_t n = ::write(fd_, line.data(), line.size());
        note_file_write(n < 0 ? errno : n == static_cast<ssize_t>(line.size()) ? 0 : ENOSPC);
        return;
    }
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
    // Bounded: drop the oldest whole lines (never the one partly written) and say so later.
    while (queued_bytes_ > max_queued && queue_.size() > 1) {
        auto victim = queue_.begin() + (written_of_front_ > 0 ? 1 : 0);
        queued_bytes_ -= victim->size();
        queue_.erase(victim);
        ++dropped_;
    }
    if (!waiting_ && write_some()) start_flush();
}

bool EventWriter::write_some() {
    while (!queue_.empty()) {
        if (dropped_ && written_of_front_ == 0) {
            nlohmann::json note{{"event", "events-dropped"}, {"count", dropped_}};
            std::string line = note.dump() + "\n";
            queued_bytes_ += line.size();
            queue_.push_front(std::move(line));
            dropped_ = 0;
        }
        const std::string& front = queue_.front();
        const char* data = front.data() + written_of_front_;
        const std::size_t size = front.size() - written_of_front_;
        ssize_t n = use_send_ ? ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL)
                              : ::write(fd_, data, size);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return true;
            // EPIPE and the like: the reader is gone for good; stop writing (SIGPIPE is ignored).
            log::write("launcher", log::Level::warn,
                       "the events reader went away; no more events are written");
            gone_ = true;
            queue_.clear();
            return false;
        }
        written_of_front_ += static_cast<std::size_t>(n);
        if (written_of_front_ == front.size()) {
            queued_bytes_ -= front.size();
            queue_.pop_front();
            written_of_front_ = 0;
        }
    }
    return true;
}

void EventWriter::note_file_write(int error) {
    // A full disk (or a file system gone read-only) must not touch the VM: the line is lost, the
    // operator is told once when it starts and once when lines are written again.
    if (error != 0) {
        if (failed_writes_++ == 0)
            log::write("launcher", log::Level::error,
                       std::string("writing events to ") + target_ + ": " + std::strerror(error) +
                           "; events are lost until writing works again (the VM is unaffected)");
        return;
    }
    if (failed_writes_ > 0) {
        log::write("launcher", log::Level::warn,
                   "events are written again to " + target_ + "; " +
                       std::to_string(failed_writes_) + " were lost");
        failed_writes_ = 0;
    }
}

void EventWriter::start_flush() {
    if (queue_.empty() || waiting_ || stopped_) return;
    if (retry_) {
        // A full socket we share: try again shortly (a reader that reads is never far behind).
        waiting_ = true;
        retry_->expires_after(std::chrono::milliseconds(10));
        retry_->async_wait([this](const boost::system::error_code& ec) {
            waiting_ = false;
            if (ec) return;
            if (write_some()) start_flush();
        });
        return;
    }
    if (!waiter_) return;
    waiting_ = true;
    waiter_->async_wait(asio::posix::stream_descriptor::wait_write,
                        [this](const boost::system::error_code& ec) {
                            waiting_ = false;
                            if (ec) return;
                            if (write_some()) start_flush();
                        });
}

void EventWriter::stop_waiting() {
    stopped_ = true;  // from now on only flush() writes what is queued
    if (waiter_) waiter_->cancel();
    if (retry_) retry_->cancel();
}

void EventWriter::flush(std::chrono::milliseconds limit) {
    if (!asynchronous_ || gone_ || queue_.empty()) return;
    stop_waiting();
    waiting_ = false;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!queue_.empty() && !gone_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd_, POLLOUT, 0};
        if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        if (!write_some()) break;
    }
}

}  // namespace qshim::cli
