// run_ctl_console(): a blocking relay between the terminal and the API's console stream.
#include "cli/ctl_console.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "cli/terminal_console.hpp"
#include "common/unique_fd.hpp"

namespace qshim::cli {

namespace {

using qshim::detail::UniqueFd;

// To a socket with MSG_NOSIGNAL: a server that went away is an error here, not a SIGPIPE that
// would end ctl with the terminal still raw.
bool write_all(int fd, std::string_view data, bool socket = false) {
    while (!data.empty()) {
        ssize_t n = socket ? ::send(fd, data.data(), data.size(), MSG_NOSIGNAL)
                           : ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// The terminal in raw mode for as long as this lives.
class RawTerminal {
  public:
    RawTerminal() {
        termios now{};
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &now) != 0) return;
        saved_ = now;
        cfmakeraw(&now);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &now);
    }
    ~RawTerminal() {
        if (saved_) tcsetattr(STDIN_FILENO, TCSAFLUSH, &*saved_);
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    bool raw() const { return saved_.has_value(); }

  private:
    std::optional<termios> saved_;
};

// The answer's head; `rest` gets what came after it (console output already).
std::optional<std::string> read_head(int fd, std::string& rest) {
    std::string data;
    char buffer[4096];
    while (data.find("\r\n\r\n") == std::string::npos) {
        if (data.size() > 64 * 1024) return std::nullopt;
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        data.append(buffer, static_cast<size_t>(n));
    }
    size_t end = data.find("\r\n\r\n") + 4;
    rest = data.substr(end);
    return data.substr(0, end);
}

// The API's error message from a refused answer (a JSON body after the head).
std::string refusal(int fd, const std::string& head, std::string body) {
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n <= 0) break;
        body.append(buffer, static_cast<size_t>(n));
    }
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_object() && json.contains("error") && json["error"].is_object() &&
        json["error"].contains("message") && json["error"]["message"].is_string())
        return json["error"]["message"].get<std::string>();
    return head.substr(0, head.find("\r\n"));
}

}  // namespace

int run_ctl_console(const std::string& socket_path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) {
        fmt::print(stderr, "qshim ctl: {}: the socket path is too long\n", socket_path);
        return 3;
    }
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        fmt::print(stderr, "qshim ctl: cannot connect to {}: {}\n", socket_path,
                   std::strerror(errno));
        return 3;
    }
    const std::string request =
        "GET /v1/vm/console HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
        "Upgrade: qshim-console\r\n\r\n";
    std::string rest;
    std::optional<std::string> head;
    if (write_all(fd.get(), request, true)) head = read_head(fd.get(), rest);
    if (!head) {
        fmt::print(stderr, "qshim ctl: {}: the connection broke before an answer\n", socket_path);
        return 3;
    }
    if (head->rfind("HTTP/1.1 101", 0) != 0) {
        fmt::print(stderr, "qshim ctl: {}\n", refusal(fd.get(), *head, rest));
        return 1;
    }
    RawTerminal terminal;
    fmt::print(stderr, "[qshim: the VM's console; Ctrl-] detaches]{}",
               terminal.raw() ? "\r\n" : "\n");
    write_all(STDOUT_FILENO, rest);
    // The socket first: once input has ended, only it is polled.
    pollfd fds[2] = {{fd.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    bool input_open = true;
    char buffer[4096];
    for (;;) {
        int ready = poll(fds, input_open ? 2 : 1, -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) break;
        if (fds[0].revents) {
            ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                fmt::print(stderr, "{}[qshim: the console ended]{}", terminal.raw() ? "\r\n" : "\n",
                           terminal.raw() ? "\r\n" : "\n");
                return 0;
            }
            write_all(STDOUT_FILENO, std::string_view(buffer, static_cast<size_t>(n)));
        }
        if (input_open && fds[1].revents) {
            ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                // End of input (a pipe ran dry): the guest's answers may still come.
                input_open = false;
                shutdown(fd.get(), SHUT_WR);
                continue;
            }
            std::string_view keys(buffer, static_cast<size_t>(n));
            size_t escape = keys.find(console_escape);
            if (!write_all(fd.get(), keys.substr(0, escape), true)) {
                fmt::print(stderr, "{}[qshim: the console ended]{}", terminal.raw() ? "\r\n" : "\n",
                           terminal.raw() ? "\r\n" : "\n");
                return 0;
            }
            if (escape != std::string_view::npos) {
                fmt::print(stderr, "{}[qshim: detached]{}", terminal.raw() ? "\r\n" : "\n",
                           terminal.raw() ? "\r\n" : "\n");
                return 0;
            }
        }
    }
    return 3;
}

}  // namespace qshim::cli
