// Supervision: QEMU's exit (pidfd), its stderr, and its QMP events; losing QMP is noticed here.
#include <fmt/format.h>
#include <sys/wait.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <qshim/log.hpp>

#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto token = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t stderr_tail_lines = 20;

// Event fields read without trusting their types: QEMU runs guest-influenced code, and a field of
// an unexpected type must not throw inside the event pump.
bool flag(const json& data, const char* key) {
    auto it = data.is_object() ? data.find(key) : data.end();
    return data.is_object() && it != data.end() && it->is_boolean() && it->get<bool>();
}

std::string text(const json& data, const char* key) {
    auto it = data.is_object() ? data.find(key) : data.end();
    return data.is_object() && it != data.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

asio::awaitable<void> Vm::Impl::watch_exit(std::shared_ptr<Impl> self) {
    // The exit fd (a pidfd) becomes readable when the process exits; no SIGCHLD handler is
    // needed, so an embedding program keeps its own signal handling.
    co_await self->pid_watch_.async_wait(asio::posix::stream_descriptor::wait_read, token);
    int status = 0;
    while (waitpid(self->child_.pid, &status, 0) < 0 && errno == EINTR) {
    }
    self->child_.reaped = true;  // its pid may be reused from now on: no more signals to it
    self->qemu_reaped_.set();
    // QEMU's last events (SHUTDOWN with guest: true) may still sit unread in the socket when
    // its exit is noticed; they decide how it ended, so read them first. QEMU's exit closed
    // the socket, so this ends at once.
    if (self->events_) co_await self->events_done_.wait(std::chrono::seconds(1));
    self->on_exit(status);
}

void Vm::Impl::on_exit(int status) {
    const Phase ended_in = phase_;
    apply(Input::exited);
    const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const auto reason = launcher::detail::exit_reason(ended_in, clean);
    exit_ = {reason, status, launcher::detail::describe_wait_status(status)};
    qmp_.close();
    remove_sockets();
    run_files_.remove();
    // The console ends by itself once its reader has drained what QEMU wrote last (QEMU's end
    // of the socketpair closed with it).
    json data{{"pid", child_.pid}, {"reason", to_string(reason)}};
    if (WIFEXITED(status)) data["code"] = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) {
        data["signal"] = WTERMSIG(status);
        const char* name = sigabbrev_np(WTERMSIG(status));
        data["signalName"] = name ? name : "?";
    }
    log::write("launcher", log::Level::info,
               fmt::format("QEMU {} ({}, phase {})", exit_.description, to_string(reason),
                           to_string(ended_in)));
    emit("exited", data);
    finish_exit();
}

void Vm::Impl::end_without_qemu(const std::string& description) {
    const Phase ended_in = phase_;
    apply(Input::exited);
    exit_ = {launcher::detail::exit_reason(ended_in), 0, description};
    run_files_.remove();
    finish_exit();
}

asio::awaitable<void> Vm::Impl::read_stderr(std::shared_ptr<Impl> self) {
    asio::streambuf buffer(64 * 1024);  // bounded: a longer line is cut, never buffered whole
    for (;;) {
        auto [ec, n] = co_await asio::async_read_until(self->stderr_, buffer, '\n', token);
        if (ec && buffer.size() == 0) break;
        std::size_t take = n ? n : buffer.size();
        std::string line(asio::buffers_begin(buffer.data()),
                         asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(take));
        buffer.consume(take);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        log::write("qemu", log::Level::warn, line);
        self->stderr_tail_.push_back(std::move(line));
        if (self->stderr_tail_.size() > stderr_tail_lines) self->stderr_tail_.pop_front();
    }
    self->drained_.set();
}

asio::awaitable<void> Vm::Impl::pump_events(std::shared_ptr<Impl> self) {
    auto listener = self->events_;
    for (;;) {
        auto e = co_await listener->next(std::chrono::hours(24 * 365));
        if (!e) {
            if (e.error().code == Errc::timeout) continue;
            break;
        }
        self->on_event(*e);
    }
    self->events_done_.set();
    // QEMU closes the connection as it exits: give the exit time to be seen before calling the
    // end of the connection a loss. A protocol violation or an error of ours leaves QEMU
    // running for certain, so there is nothing to wait for. (One exit: see end_by_signals.)
    auto why = self->qmp_.close_reason();
    bool certain = why && (why->code == Errc::protocol || why->code == Errc::internal);
    if (!self->exited_.is_set() && !certain)
        co_await self->exited_.wait(self->options_.quit_timeout);
    if (!self->exited_.is_set()) self->on_qmp_closed();
}

void Vm::Impl::on_qmp_closed() {
    auto why = qmp_.close_reason();
    std::string reason = why ? why->what() : "the connection ended";
    const Phase before = phase_;
    if (!apply(Input::qmp_lost)) {
        // Quitting or starting: the end of the connection is expected, or fails the start.
        log::write("launcher", log::Level::debug,
                   fmt::format("QMP connection ended while {}: {}", to_string(before), reason));
        return;
    }
    log::write("launcher", log::Level::error,
               fmt::format("lost the QMP connection to QEMU (pid {}) while {}: {}; the guest "
                           "keeps running, but nothing can change it now, and a stop ends QEMU "
                           "with SIGTERM, then SIGKILL",
                           child_.pid, to_string(before), reason));
    json data{{"reason", reason}, {"phase", to_string(before)}};
    if (why) data["code"] = to_string(why->code);
    emit("qmp-lost", std::move(data));
    qmp_lost_.set();  // wakes a stop ladder that was waiting for the guest
}

void Vm::Impl::on_event(const qmp::Event& e) {
    // With QEMU's own time of the event (bench/migrate.py reads it to time the switchover pause).
    if (log::enabled("qmp", log::Level::debug)) {
        auto part = [&e](const char* key) -> int64_t {
            if (!e.timestamp.is_object()) return 0;
            auto it = e.timestamp.find(key);
            return it != e.timestamp.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
        };
        log::write("qmp", log::Level::debug,
                   fmt::format("event {} {} at {}.{:06}", e.name, e.data.dump(), part("seconds"),
                               part("microseconds")));
    }
    if (e.name == "SHUTDOWN") {
        bool guest = flag(e.data, "guest");
        if (guest) apply(Input::guest_shutdown);
        emit(guest ? "guest-shutdown" : "shutdown", {{"reason", text(e.data, "reason")}});
    } else if (e.name == "STOP") {
        Phase before = phase_;
        if (apply(Input::stopped) && before != phase_) emit("paused", {});
    } else if (e.name == "DEVICE_DELETED") {
        if (auto id = text(e.data, "device"); !id.empty()) hotplug_.device_deleted(id);
    } else if (e.name == "RESUME") {
        Phase before = phase_;
        if (apply(Input::resumed) && before != phase_) emit("running", {});
    }
}

}  // namespace qshim
