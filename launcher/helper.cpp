// A helper process: spawned sandboxed, its output logged, its socket awaited, its exit watched.
#include "launcher/helper.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <qshim/log.hpp>
#include <sstream>

#include "common/spawn.hpp"
#include "common/unique_fd.hpp"

extern char** environ;

namespace qshim::launcher::detail {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using qshim::detail::UniqueFd;

namespace {

constexpr auto token = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t output_tail_lines = 10;
// __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket is listening.
constexpr unsigned long so_acceptcon = 1ul << 16;

std::string read_proc_net_unix() {
    std::ifstream in("/proc/net/unix");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// A listening unix socket at `path`, for `ids` to connect to (when it is not qshim's own).
Result<UniqueFd> listen_at(const std::string& path, const SandboxPlan& sandbox) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path)
        return make_error(Errc::launch, fmt::format("{}: too long for a unix socket", path));
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd.get(), 1) != 0)
        return make_error(Errc::launch, fmt::format("{}: {}", path, std::strerror(errno)));
    // QEMU, which connects to it, runs as these ids: connecting needs write permission.
    if (sandbox.change_ids && chown(path.c_str(), sandbox.ids.uid, sandbox.ids.gid) != 0)
        return make_error(Errc::launch, fmt::format("{}: cannot give it to uid {}: {}", path,
                                                    sandbox.ids.uid, std::strerror(errno)));
    return fd;
}

// A socket file left by a helper that was killed would make the next one fail to bind.
void remove_socket_file(const std::string& path) {
    struct stat st {};
    if (!path.empty() && lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path.c_str());
}

}  // namespace

bool listening_in(std::string_view table, std::string_view path) {
    std::size_t pos = 0;
    while (pos < table.size()) {
        std::size_t end = std::min(table.find('\n', pos), table.size());
        std::string_view line = table.substr(pos, end - pos);
        pos = end + 1;
        // Num RefCount Protocol Flags Type St Inode, then the path (which may hold spaces).
        std::string_view fields[7];
        std::size_t i = 0;
        bool complete = true;
        for (auto& field : fields) {
            while (i < line.size() && line[i] == ' ') ++i;
            std::size_t start = i;
            while (i < line.size() && line[i] != ' ') ++i;
            field = line.substr(start, i - start);
            complete = complete && !field.empty();
        }
        if (!complete || i + 1 >= line.size() || line.substr(i + 1) != path) continue;
        std::string flags(fields[3]);
        char* rest = nullptr;
        unsigned long value = std::strtoul(flags.c_str(), &rest, 16);
        if (rest && *rest == '\0' && (value & so_acceptcon)) return true;
    }
    return false;
}

Helper::Helper(asio::any_io_executor ex, HelperSpec spec)
    : ex_(ex), spec_(std::move(spec)), exit_watch_(ex), output_(ex), exited_(ex), drained_(ex) {}

Helper::~Helper() {
    // Reached with a live child only when start() never got to watch it.
    if (child_.pid > 0 && !child_.reaped) {
        signal_child(child_, SIGKILL);
        while (waitpid(child_.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

asio::awaitable<Result<void>> Helper::start(const SandboxPlan& sandbox,
                                            const std::vector<unsigned>& affinity,
                                            std::chrono::milliseconds timeout,
                                            const std::function<void(int status)>& on_exit) {
    const std::string context = fmt::format("starting {} for {}", spec_.name, spec_.device);
    if (auto made = make_dir(sandbox); !made)
        co_return make_error(Errc::launch, failure(made.error().message), context);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        co_return make_error(Errc::launch, fmt::format("pipe2: {}", std::strerror(errno)), context);
    UniqueFd out_read(out[0]), out_write(out[1]);
    UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull)
        co_return make_error(Errc::launch, fmt::format("/dev/null: {}", std::strerror(errno)),
                             context);
    UniqueFd listening;
    if (spec_.socket_from_qshim) {
        auto made = listen_at(spec_.socket, sandbox);
        if (!made) {
            remove_dir();
            co_return make_error(Errc::launch, failure(made.error().message), context);
        }
        listening = std::move(*made);
    }
    SandboxPlan own =
        spec_.own_namespaces ? own_namespaces_plan(sandbox, spec_.read_only_bind) : sandbox;
    if (spec_.sandboxes_itself) own.seccomp.clear();
    SpawnPlan plan;
    plan.argv = spec_.argv;
    for (char** e = environ; e && *e; ++e) plan.env.emplace_back(*e);
    // stdout and stderr both go to the log: helpers differ in which one they report on.
    plan.fds = {devnull.get(), out_write.get(), out_write.get()};
    if (listening) plan.fds.push_back(listening.get());  // fd 3
    plan.sandbox = &own;
    plan.affinity = affinity;
    auto child = spawn(plan);
    listening.reset();  // the helper holds it now
    if (!child) {
        remove_dir();
        co_return make_error(
            Errc::launch, fmt::format("{} (from Debian's {})", child.error().what(), spec_.package),
            context);
    }
    child_ = *child;
    out_write.reset();
    exit_watch_.assign(child_.exit_fd);
    output_.assign(out_read.release());
    log::write(spec_.name, log::Level::info,
               fmt::format("started for {}, pid {}", spec_.device, child_.pid));
    auto self = shared_from_this();
    qshim::detail::spawn(ex_, read_output(self), "reading a helper's output");
    qshim::detail::spawn(ex_, watch_exit(self), "watching a helper");

    auto ready = co_await wait_listening(timeout);
    if (!ready) {
        stopping_ = true;
        signal_child(child_, SIGKILL);
        co_await exited_.wait(5s);
        remove_dir();
        co_return make_error(Errc::launch, failure(ready.error().what()), context);
    }
    log::write(spec_.name, log::Level::info, "ready on " + spec_.socket);
    on_exit_ = on_exit;
    co_return Result<void>{};
}

asio::awaitable<Result<void>> Helper::wait_listening(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(5);
    for (;;) {
        if (exited_.is_set())
            co_return make_error(
                Errc::launch,
                spec_.ready_line.empty()
                    ? fmt::format("it {} before its socket {} listened", description_, spec_.socket)
                    : fmt::format("it {} before it said \"{}\"", description_, spec_.ready_line));
        if (spec_.ready_line.empty() ? listening_in(read_proc_net_unix(), spec_.socket)
                                     : ready_line_seen_)
            co_return Result<void>{};
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
            co_return make_error(Errc::timeout,
                                 spec_.ready_line.empty()
                                     ? fmt::format("its socket {} was not listening within {} ms",
                                                   spec_.socket, timeout.count())
                                     : fmt::format("it did not say \"{}\" within {} ms",
                                                   spec_.ready_line, timeout.count()));
        // Wakes at once if it exits meanwhile.
        co_await exited_.wait(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
        pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
}

std::string Helper::failure(const std::string& why) const {
    std::string message = fmt::format("{} ({}): {}\n  argv:", spec_.name, spec_.device, why);
    for (const auto& a : spec_.argv) message += " " + a;
    message += "\n  its output (last lines):";
    for (const auto& line : tail_) message += "\n    " + line;
    if (tail_.empty()) message += " (none)";
    return message;
}

asio::awaitable<void> Helper::read_output(std::shared_ptr<Helper> self) {
    asio::streambuf buffer(64 * 1024);  // bounded: a longer line is cut, never buffered whole
    for (;;) {
        auto [ec, n] = co_await asio::async_read_until(self->output_, buffer, '\n', token);
        if (ec && buffer.size() == 0) break;
        std::size_t take = n ? n : buffer.size();
        std::string line(asio::buffers_begin(buffer.data()),
                         asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(take));
        buffer.consume(take);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        if (!self->spec_.ready_line.empty() &&
            line.find(self->spec_.ready_line) != std::string::npos)
            self->ready_line_seen_ = true;
        log::write(self->spec_.name, log::Level::info, line);
        self->tail_.push_back(std::move(line));
        if (self->tail_.size() > output_tail_lines) self->tail_.pop_front();
    }
    self->drained_.set();
}

asio::awaitable<void> Helper::watch_exit(std::shared_ptr<Helper> self) {
    co_await self->exit_watch_.async_wait(asio::posix::stream_descriptor::wait_read, token);
    int status = 0;
    while (waitpid(self->child_.pid, &status, 0) < 0 && errno == EINTR) {
    }
    self->child_.reaped = true;  // its pid may be reused from now on: no more signals to it
    self->status_ = status;
    self->description_ = describe_wait_status(status);
    co_await self->drained_.wait(1s);  // its last lines explain its end
    // Whether an end is a failure is the VM's to say (a helper may end because QEMU did).
    const bool clean = self->stopping_ || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    log::write(self->spec_.name, clean ? log::Level::info : log::Level::error,
               fmt::format("pid {} {}", self->child_.pid, self->description_));
    self->exited_.set();
    if (!self->stopping_ && self->on_exit_) self->on_exit_(status);
}

asio::awaitable<void> Helper::stop(std::chrono::milliseconds grace) {
    if (child_.pid > 0 && !exited_.is_set()) {
        stopping_ = true;
        signal_child(child_, SIGTERM);
        // The result is kept in a variable: g++ 12 resumed `if (!co_await ...)` here into
        // a destroyed frame (vm_stop.cpp met the same).
        const bool gone = co_await exited_.wait(grace);
        if (!gone) {
            log::write(spec_.name, log::Level::warn,
                       fmt::format("still running {} ms after SIGTERM: killing it", grace.count()));
            signal_child(child_, SIGKILL);
            co_await exited_.wait();
        }
    }
    remove_dir();
}

// Made by qshim, then given to the helper's uid: a stale one (from a run that was killed) is
// emptied of its socket and made anew, so nothing planted in it survives.
Result<void> Helper::make_dir(const SandboxPlan& sandbox) const {
    if (spec_.dir.empty()) return {};
    remove_dir();
    if (mkdir(spec_.dir.c_str(), 0700) != 0)
        return make_error(
            Errc::launch,
            errno == EEXIST
                ? fmt::format("{}: its folder, left by an earlier run, holds more than a socket; "
                              "qshim removes nothing it did not expect: look, then remove it",
                              spec_.dir)
                : fmt::format("{}: cannot create its folder: {}", spec_.dir, std::strerror(errno)));
    if (sandbox.change_ids && chown(spec_.dir.c_str(), sandbox.ids.uid, sandbox.ids.gid) != 0) {
        int err = errno;
        rmdir(spec_.dir.c_str());
        return make_error(Errc::launch, fmt::format("{}: cannot give it to uid {}: {}", spec_.dir,
                                                    sandbox.ids.uid, std::strerror(err)));
    }
    return {};
}

// unlink and rmdir follow no symlink: whatever the helper left, only its socket goes, and the
// folder only if it is then empty.
void Helper::remove_dir() const {
    remove_socket_file(spec_.socket);
    if (!spec_.dir.empty()) rmdir(spec_.dir.c_str());
}

void Helper::kill() {
    if (child_.pid <= 0 || exited_.is_set()) return;
    stopping_ = true;
    signal_child(child_, SIGKILL);
}

}  // namespace qshim::launcher::detail
