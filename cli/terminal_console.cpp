// TerminalConsole: the guest's serial console on qshim's own terminal.
#include "cli/terminal_console.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/spawn.hpp"

namespace qshim::cli {

namespace asio = boost::asio;

namespace {

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the terminal went away: nothing more to show
        data.remove_prefix(static_cast<size_t>(n));
    }
}

}  // namespace

TerminalConsole::TerminalConsole(asio::any_io_executor ex, Vm& vm, std::function<void()> on_escape)
    : vm_(vm), on_escape_(std::move(on_escape)), input_(ex) {}

TerminalConsole::~TerminalConsole() { stop(); }

Result<void> TerminalConsole::start() {
    auto attached = vm_.attach_console(
        [](std::string_view data) { write_all(STDOUT_FILENO, data); }, [this] { stop(); });
    if (!attached) return std::move(attached).error();
    attached_ = *attached;
    termios now{};
    if (tcgetattr(STDIN_FILENO, &now) != 0) {
        stop();
        return make_error(Errc::io, std::string("tcgetattr: ") + std::strerror(errno),
                          "putting the terminal in raw mode");
    }
    saved_ = now;
    termios raw = now;
    cfmakeraw(&raw);  // no echo, no line editing, no signals from keys: the guest gets them all
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
    // asio may make the descriptor non-blocking, and the flag lives in the open file that the
    // shell shares: it is put back on stop().
    saved_flags_ = fcntl(STDIN_FILENO, F_GETFL);
    int fd = dup(STDIN_FILENO);
    if (fd < 0) {
        stop();
        return make_error(Errc::io, std::string("dup: ") + std::strerror(errno),
                          "reading the terminal");
    }
    input_.assign(fd);
    write_all(STDERR_FILENO, "[qshim: the VM's console; Ctrl-] stops the VM]\r\n");
    read_keys();
    return {};
}

void TerminalConsole::stop() {
    if (attached_) vm_.detach_console(*attached_);
    attached_.reset();
    boost::system::error_code ignored;
    if (input_.is_open()) input_.close(ignored);
    if (saved_) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &*saved_);
        saved_.reset();
        write_all(STDERR_FILENO, "\r\n");
    }
    if (saved_flags_ >= 0) fcntl(STDIN_FILENO, F_SETFL, saved_flags_);
    saved_flags_ = -1;
}

void TerminalConsole::read_keys() {
    input_.async_wait(asio::posix::descriptor_base::wait_read,
                      [this](const boost::system::error_code& ec) {
                          if (ec || !attached_) return;
                          char keys[1024];
                          ssize_t n = ::read(input_.native_handle(), keys, sizeof keys);
                          if (n < 0 && (errno == EINTR || errno == EAGAIN)) return read_keys();
                          if (n <= 0) return;  // the terminal closed: keep showing output
                          on_keys(keys, static_cast<size_t>(n));
                          read_keys();
                      });
}

void TerminalConsole::on_keys(const char* data, size_t size) {
    std::string_view keys(data, size);
    size_t escape = keys.find(console_escape);
    pending_.append(keys.substr(0, escape));
    // One writer at a time, so keys reach the guest in the order they were typed.
    if (!pending_.empty() && attached_ && !writing_) {
        writing_ = true;
        qshim::detail::spawn(
            input_.get_executor(),
            [this]() -> asio::awaitable<void> {
                while (!pending_.empty() && attached_) {
                    std::string bytes;
                    bytes.swap(pending_);
                    if (!co_await vm_.write_console(std::move(bytes))) break;
                }
                pending_.clear();
                writing_ = false;
            },
            "typing on the console");
    }
    if (escape != std::string_view::npos && !escaped_) {
        escaped_ = true;
        write_all(STDERR_FILENO, "\r\n[qshim: Ctrl-] pressed: stopping the VM]\r\n");
        on_escape_();
    }
}

}  // namespace qshim::cli
