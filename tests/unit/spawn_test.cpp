// spawn() against the fake QEMU: the fd plan, nothing else inherited, signals reset, exec errors.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "launcher/process.hpp"

using namespace qshim;
namespace fs = std::filesystem;

namespace {

ino_t inode(int fd) {
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    return st.st_ino;
}

int wait_for(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

}  // namespace

TEST_CASE("the child gets exactly the planned fds at their numbers, default signals, no mask") {
    auto dir = fs::temp_directory_path() / ("qshim-spawn-" + std::to_string(getpid()));
    fs::create_directories(dir);
    const auto report = dir / "report.json";
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int pipe_fds[2];
    REQUIRE(pipe2(pipe_fds, O_CLOEXEC) == 0);
    int file = open((dir / "data").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    // Not close-on-exec, and not in the plan: must not reach the child anyway.
    int stray = open("/dev/zero", O_RDONLY);
    REQUIRE(stray >= 0);
    // What qshim blocks or ignores must not be inherited (asio blocks nothing, but an embedder
    // may; qshim ignores SIGPIPE).
    sigset_t usr1, old_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
    auto old_pipe = signal(SIGPIPE, SIG_IGN);

    launcher::detail::SpawnPlan plan;
    plan.argv = {QSHIM_FAKE_QEMU, "-name", "x"};
    plan.env = {"QSHIM_FAKE_REPORT=" + report.string()};  // no QSHIM_FAKE_QMP: it exits 1
    plan.fds = {devnull, devnull, devnull, pipe_fds[1], file};
    auto child = launcher::detail::spawn(plan);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    signal(SIGPIPE, old_pipe);
    REQUIRE(child.ok());
    int status = wait_for(child->pid);
    close(child->exit_fd);
    CHECK(WIFEXITED(status));

    auto j = nlohmann::json::parse(std::ifstream(report));
    std::vector<std::string> fds;
    for (auto& [fd, ino] : j["fds"].items()) fds.push_back(fd);
    CHECK(fds == std::vector<std::string>{"0", "1", "2", "3", "4"});
    CHECK(j["fds"]["3"] == inode(pipe_fds[1]));
    CHECK(j["fds"]["4"] == inode(file));
    CHECK(j["sigblk"] == "0000000000000000");
    CHECK(j["sigign"] == "0000000000000000");
    CHECK(j["argv"][1] == "-name");

    for (int fd : {devnull, pipe_fds[0], pipe_fds[1], file, stray}) close(fd);
    fs::remove_all(dir);
}

TEST_CASE("a source fd that sits on a target number is moved, not overwritten") {
    // The plan asks for fd 4 -> 3 and fd 3 -> 4: a naive dup2 loop would lose one.
    int a[2], b[2];
    REQUIRE(pipe2(a, O_CLOEXEC) == 0);
    REQUIRE(pipe2(b, O_CLOEXEC) == 0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    // Put the two write ends at 3 and 4 exactly (the test's own 3 and 4 are saved first).
    int save3 = fcntl(3, F_DUPFD_CLOEXEC, 100), save4 = fcntl(4, F_DUPFD_CLOEXEC, 100);
    REQUIRE(dup3(a[1], 3, O_CLOEXEC) == 3);
    REQUIRE(dup3(b[1], 4, O_CLOEXEC) == 4);
    const ino_t ino_a = inode(3), ino_b = inode(4);
    auto report = fs::temp_directory_path() / ("qshim-swap-" + std::to_string(getpid()));
    launcher::detail::SpawnPlan plan;
    plan.argv = {QSHIM_FAKE_QEMU};
    plan.env = {"QSHIM_FAKE_REPORT=" + report.string()};
    plan.fds = {devnull, devnull, devnull, 4, 3};
    auto child = launcher::detail::spawn(plan);
    // Restore the test's own fds 3 and 4 before anything can fail.
    if (save3 >= 0)
        dup3(save3, 3, O_CLOEXEC);
    else
        close(3);
    if (save4 >= 0)
        dup3(save4, 4, O_CLOEXEC);
    else
        close(4);
    REQUIRE(child.ok());
    wait_for(child->pid);
    close(child->exit_fd);
    auto j = nlohmann::json::parse(std::ifstream(report));
    CHECK(j["fds"]["3"] == ino_b);
    CHECK(j["fds"]["4"] == ino_a);
    for (int fd : {a[0], a[1], b[0], b[1], devnull, save3, save4})
        if (fd >= 0) close(fd);
    fs::remove(report);
}

TEST_CASE("exec failures come back as errors naming the binary") {
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    launcher::detail::SpawnPlan plan;
    plan.fds = {devnull, devnull, devnull};
    plan.argv = {"/nonexistent/qemu"};
    auto missing = launcher::detail::spawn(plan);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::launch);
    CHECK(missing.error().what().find("/nonexistent/qemu") != std::string::npos);
    CHECK(missing.error().what().find("No such file") != std::string::npos);
    plan.argv = {"qshim-no-such-binary-in-path"};
    auto unknown = launcher::detail::spawn(plan);
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().what().find("not found in PATH") != std::string::npos);
    close(devnull);
}

TEST_CASE("without pidfd_open, the exit fd still becomes readable at the exit, unreaped") {
    int gate[2];
    REQUIRE(pipe2(gate, O_CLOEXEC) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(gate[1]);  // or the read below never sees the end
        char c;
        (void)!read(gate[0], &c, 1);  // until the test lets it go
        _exit(7);
    }
    close(gate[0]);
    auto fd = launcher::detail::exit_fd_without_pidfd(pid);
    REQUIRE(fd.ok());
    pollfd p{*fd, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 0);  // still running
    close(gate[1]);              // the child exits
    REQUIRE(poll(&p, 1, 10'000) == 1);
    // Not reaped by the watcher: the status is still ours to collect.
    CHECK(WEXITSTATUS(wait_for(pid)) == 7);
    close(*fd);
}
