// The QMP client against a real QEMU started paused, its QMP on an inherited socketpair end.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <qshim/qmp.hpp>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

using namespace qshim;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using qmp::Duration;
using qmp::Json;

namespace {

constexpr int qmp_fd_in_child = 3;

// A QEMU process that is always killed and reaped, even when a REQUIRE throws out of the test.
class Qemu {
  public:
    Qemu() {
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
        ours_ = pair[0];
        // The child's end must not already be fd 3: dup2 onto itself would keep FD_CLOEXEC.
        int theirs = ::fcntl(pair[1], F_DUPFD_CLOEXEC, qmp_fd_in_child + 1);
        ::close(pair[1]);
        REQUIRE(theirs > qmp_fd_in_child);
        std::snprintf(stderr_path_, sizeof stderr_path_, "/tmp/qshim-qemu-stderr-XXXXXX");
        int err = ::mkstemp(stderr_path_);
        REQUIRE(err >= 0);

        // argv and the fd plan are complete before the spawn: the child only dup2s and execs.
        std::vector<std::string> args = {"qemu-system-x86_64",
                                         "-machine",
                                         "pc-q35-7.2",
                                         "-accel",
                                         "tcg",
                                         "-nodefaults",
                                         "-display",
                                         "none",
                                         "-S",
                                         "-chardev",
                                         "socket,id=qmp,fd=" + std::to_string(qmp_fd_in_child),
                                         "-mon",
                                         "chardev=qmp,mode=control"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&actions, err, 2);
        posix_spawn_file_actions_adddup2(&actions, theirs, qmp_fd_in_child);
        int rc = ::posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(theirs);  // QEMU holds the only copy: its exit is our EOF
        ::close(err);
        REQUIRE(rc == 0);
        pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        if (pidfd_ < 0) {
            // A throwing constructor runs no destructor: reap the child here.
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            FAIL("pidfd_open failed");
        }
    }

    ~Qemu() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (pidfd_ >= 0) ::close(pidfd_);
        if (ours_ >= 0) ::close(ours_);
        ::unlink(stderr_path_);
    }

    // Our end of the QMP socketpair, handed to the client (once).
    int take_qmp_fd() { return std::exchange(ours_, -1); }

    // Waits (without polling) until QEMU exits, then reaps it. Returns its wait status.
    asio::awaitable<std::optional<int>> wait_exit(Duration timeout) {
        auto executor = co_await asio::this_coro::executor;
        // Shared with the deadline's handler, which may run after this frame is gone.
        auto pidfd = std::make_shared<asio::posix::stream_descriptor>(executor, ::dup(pidfd_));
        asio::steady_timer deadline(executor, timeout);
        deadline.async_wait([pidfd](boost::system::error_code ec) {
            if (!ec) pidfd->cancel();
        });
        // A pidfd becomes readable when the process exits.
        auto [ec] = co_await pidfd->async_wait(asio::posix::descriptor_base::wait_read,
                                               asio::as_tuple(asio::use_awaitable));
        deadline.cancel();
        if (ec) co_return std::nullopt;
        int status = 0;
        if (::waitpid(pid_, &status, 0) != pid_) co_return std::nullopt;
        pid_ = -1;
        co_return status;
    }

    std::string stderr_text() const {
        std::ifstream in(stderr_path_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  private:
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int ours_ = -1;
    char stderr_path_[64] = {};
};

template <typename T>
void require_ok(const Result<T>& r) {
    INFO((r.ok() ? std::string("ok") : r.error().what()));
    REQUIRE(r.ok());
}

}  // namespace

TEST_CASE("a real QEMU: status, errors, events, fd passing and quit", "[qmp][qemu]") {
    asio::io_context io;
    Qemu qemu;
    qmp::Client client(io.get_executor());
    bool done = false;
    std::exception_ptr failure;

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto greeting = co_await client.connect_fd(qemu.take_qmp_fd());
            require_ok(greeting);
            // Any QEMU that still has topology v1's machine type (pc-q35-7.2): 7.2 or newer.
            const auto& greeted = greeting->at("version").at("qemu");
            const int major = greeted.at("major"), minor = greeted.at("minor");
            CHECK((major > 7 || (major == 7 && minor >= 2)));
            CHECK(client.state() == qmp::State::running);

            auto status = co_await client.execute("query-status");
            require_ok(status);
            CHECK(status->at("running") == false);
            CHECK(status->at("status") == "prelaunch");

            auto version = co_await client.execute("query-version");
            require_ok(version);
            CHECK(version->at("qemu") == greeted);  // the greeting and the query agree

            auto unknown = co_await client.execute("no-such-command");
            REQUIRE(!unknown.ok());
            CHECK(unknown.error().code == Errc::qmp);
            CHECK(unknown.error().qmp_class == "CommandNotFound");
            CHECK_THAT(unknown.error().context, Catch::Contains("no-such-command"));

            // Subscribe first, then act, then wait: the event cannot slip past.
            auto runstate = client.listen(qmp::EventFilter{{"RESUME", "STOP"}, {}});
            require_ok(co_await client.execute("cont"));
            auto resumed = co_await qmp::wait_event(
                *runstate, [](const qmp::Event& e) { return e.name == "RESUME"; }, 10s);
            require_ok(resumed);
            require_ok(co_await client.execute("stop"));
            auto stopped = co_await qmp::wait_event(
                *runstate, [](const qmp::Event& e) { return e.name == "STOP"; }, 10s);
            require_ok(stopped);
            CHECK(stopped->timestamp.contains("seconds"));

            int pipe_fds[2];
            REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
            Json args = {{"fdname", "qshim-pipe"}};  // g++ 12 rejects a braced Json inside co_await
            auto getfd = co_await client.execute_with_fd("getfd", args, pipe_fds[1]);
            ::close(pipe_fds[0]);
            ::close(pipe_fds[1]);
            require_ok(getfd);
            require_ok(co_await client.execute("closefd", args));
            auto again = co_await client.execute("closefd", args);
            REQUIRE(!again.ok());
            CHECK(again.error().qmp_class == "GenericError");  // it is gone

            auto shutdown = client.listen(qmp::EventFilter{{"SHUTDOWN"}, {}});
            require_ok(co_await client.execute("quit"));
            auto shut = co_await shutdown->next(10s);
            require_ok(shut);
            CHECK(shut->data.at("reason") == "host-qmp-quit");
            auto status_code = co_await qemu.wait_exit(10'000ms);
            REQUIRE(status_code);
            CHECK(WIFEXITED(*status_code));
            // QEMU has exited, so the connection has ended: a reader that has not noticed yet
            // fails the call with interrupted, one that has makes it a state error.
            auto after = co_await client.execute("query-status");
            REQUIRE(!after.ok());
            CHECK((after.error().code == Errc::interrupted || after.error().code == Errc::state));
            auto closed = co_await shutdown->next(10s);
            REQUIRE(!closed.ok());
            CHECK(closed.error().code == Errc::interrupted);
            CHECK(client.state() == qmp::State::disconnected);
        },
        [&](std::exception_ptr e) {
            done = true;
            failure = e;
            client.close();
        });
    io.run_for(60s);
    INFO("QEMU stderr: " << qemu.stderr_text());
    if (failure) std::rethrow_exception(failure);
    REQUIRE(done);
    CHECK(io.stopped());
}
