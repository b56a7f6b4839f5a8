// spawn(): fork/exec with a fixed fd plan, a death signal, and exec errors reported back.
#include "launcher/process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <system_error>
#include <thread>

namespace qshim::launcher::detail {

namespace {

// What the child reports when it cannot exec: the step that failed and its errno.
enum class Step : int { prepare = 1, sandbox = 2, exec = 3, affinity = 4, namespaces = 5 };

// A CPU mask built before fork (the child may not allocate); freed by its owner.
struct CpuMask {
    cpu_set_t* set = nullptr;
    size_t size = 0;
    explicit CpuMask(const std::vector<unsigned>& cpus) {
        if (cpus.empty()) return;
        unsigned count = 0;
        for (unsigned c : cpus) count = std::max(count, c + 1);
        set = CPU_ALLOC(count);
        size = CPU_ALLOC_SIZE(count);
        CPU_ZERO_S(size, set);
        for (unsigned c : cpus) CPU_SET_S(c, size, set);
    }
    ~CpuMask() {
        if (set) CPU_FREE(set);
    }
    CpuMask(const CpuMask&) = delete;
    CpuMask& operator=(const CpuMask&) = delete;
};
struct ChildReport {
    Step step;
    int err;
};

[[noreturn]] void child_fail(int report_fd, int err, Step step = Step::prepare) {
    // Only async-signal-safe calls from here on.
    ChildReport report{step, err};
    ssize_t ignored = write(report_fd, &report, sizeof report);
    (void)ignored;
    _exit(127);
}

// Closes fds first..last (inclusive). close_range needs Linux 5.9; on older kernels (RHEL 8's
// 4.18, the ones the pidfd fallback is for) a plain loop up to the fd limit does the same.
// Some container runtimes' seccomp profiles (older Docker, containerd) deny close_range with
// EPERM rather than ENOSYS: the loop serves then too. Without a known fd limit it stops at 65536.
int close_fds(unsigned first, unsigned last, long open_max) {
    if (first > last) return 0;
    if (close_range(first, last, 0) == 0) return 0;
    if (errno != ENOSYS && errno != EPERM) return -1;
    const unsigned long limit = open_max > 0 ? static_cast<unsigned long>(open_max) : 65536;
    unsigned end = limit - 1 < last ? static_cast<unsigned>(limit - 1) : last;
    for (unsigned fd = first; fd <= end; ++fd) close(static_cast<int>(fd));
    return 0;
}

// Runs in the child. Every fd we hand over is first moved above the target range, so a source
// that happens to sit on a target number is not overwritten before it is used.
[[noreturn]] void child_exec(const SpawnPlan& plan, const CpuMask& affinity, char* const* argv,
                             char* const* envp, int report_fd, pid_t parent, long open_max) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(report_fd, errno);
    // The parent may have died between fork and prctl; then nobody would ever kill us.
    if (getppid() != parent) child_fail(report_fd, ESRCH);
    // A session of its own: a Ctrl-C at qshim's terminal (SIGINT to the foreground process
    // group) must reach qshim, which stops the guest gracefully, and not QEMU, which would quit.
    if (setsid() < 0) child_fail(report_fd, errno);
    const int count = static_cast<int>(plan.fds.size());
    int high = count > report_fd ? count : report_fd + 1;
    int moved[64];
    if (count > 64) child_fail(report_fd, EMFILE);
    for (int i = 0; i < count; ++i) {
        moved[i] = fcntl(plan.fds[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, high);
        if (moved[i] < 0) child_fail(report_fd, errno);
    }
    // report_fd may be among the targets' numbers: move it above them too.
    int report = fcntl(report_fd, F_DUPFD_CLOEXEC, high);
    if (report < 0) child_fail(report_fd, errno);
    for (int i = 0; i < count; ++i)
        if (dup2(moved[i], i) < 0) child_fail(report, errno);  // dup2 clears CLOEXEC on i
    // Everything else goes, except the report pipe, which closes itself on exec.
    if (close_fds(static_cast<unsigned>(count), static_cast<unsigned>(report) - 1, open_max) != 0)
        child_fail(report, errno);
    if (close_fds(static_cast<unsigned>(report) + 1, ~0u, open_max) != 0) child_fail(report, errno);
    // Before the ids change: a thread's affinity is inherited by every thread it creates.
    if (affinity.set && sched_setaffinity(0, affinity.size, affinity.set) != 0)
        child_fail(report, errno, Step::affinity);
    if (plan.sandbox)
        if (int err = apply_sandbox(*plan.sandbox, parent); err != 0)
            child_fail(report, err, Step::sandbox);
    if (plan.sandbox && plan.sandbox->own_namespaces())
        if (int err = enter_own_namespaces(*plan.sandbox, parent); err != 0)
            child_fail(report, err, Step::namespaces);
    // Signals blocked or ignored by qshim must not be inherited by QEMU. Every signal is still
    // blocked (spawn blocked them before fork): handlers go back to their defaults first, so
    // none of qshim's handlers (asio's, which write to qshim's own pipe) can run in the child.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(argv[0], argv, envp);
    child_fail(report, errno, Step::exec);
}

}  // namespace

// Without pidfd_open: a thread waits for the exit without reaping (WNOWAIT) and closes the write
// end of a pipe, whose read end then reads EOF: readable, like a pidfd.
Result<int> exit_fd_without_pidfd(pid_t pid) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return make_error(Errc::io, fmt::format("pipe: {}", std::strerror(errno)));
    try {
        std::thread([pid, done = fds[1]] {
            siginfo_t info{};
            while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0 &&
                   errno == EINTR) {
            }
            close(done);
        }).detach();
    } catch (const std::system_error& e) {
        close(fds[0]);
        close(fds[1]);
        return make_error(Errc::io, std::string("starting the exit watcher: ") + e.what());
    }
    return fds[0];
}

std::string find_program(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/" + name;
        if (access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return {};
}

Result<Child> spawn(const SpawnPlan& plan) {
    const std::string context = plan.argv.empty() ? "spawning" : "spawning " + plan.argv[0];
    if (plan.argv.empty()) return make_error(Errc::internal, "empty argv", context);
    // execve does not search PATH; resolve it now, while we may still allocate.
    std::string binary = find_program(plan.argv[0]);
    if (binary.empty()) return make_error(Errc::launch, "not found in PATH", context);
    std::vector<char*> argv;
    argv.push_back(binary.data());
    for (size_t i = 1; i < plan.argv.size(); ++i)
        argv.push_back(const_cast<char*>(plan.argv[i].c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    const CpuMask affinity(plan.affinity);
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        return make_error(Errc::io, fmt::format("pipe: {}", std::strerror(errno)), context);
    pid_t parent = getpid();
    const long open_max = sysconf(_SC_OPEN_MAX);  // for the close loop where close_range is missing
    // A signal arriving between fork and exec would run qshim's handler in the child: block
    // them all across fork; the child restores defaults before unblocking.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        child_exec(plan, affinity, argv.data(), envp.data(), report[1], parent, open_max);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) {
        close(report[0]);
        close(report[1]);
        return make_error(Errc::launch, fmt::format("fork: {}", std::strerror(fork_errno)),
                          context);
    }
    close(report[1]);
    ChildReport failed{};
    ssize_t n;
    do {
        n = read(report[0], &failed, sizeof failed);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof failed) {
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        const char* step = failed.step == Step::exec       ? "exec"
                           : failed.step == Step::sandbox  ? "setting up the sandbox for"
                           : failed.step == Step::affinity ? "setting the CPU affinity of"
                           : failed.step == Step::namespaces
                               ? "entering a user namespace (unprivileged user namespaces must be "
                                 "allowed) for"
                               : "preparing to exec";
        return make_error(Errc::launch,
                          fmt::format("{} {}: {}", step, binary, std::strerror(failed.err)),
                          context);
    }
    int pidfd = detail::pidfd_open(pid);
    if (pidfd >= 0) {
        fcntl(pidfd, F_SETFD, FD_CLOEXEC);
        return Child{pid, pidfd, true};
    }
    if (errno == ENOSYS) {
        auto watcher = exit_fd_without_pidfd(pid);
        if (watcher) return Child{pid, *watcher, false};
        errno = watcher.error().code == Errc::io ? EMFILE : ENOSYS;
    }
    int err = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return make_error(Errc::launch, fmt::format("pidfd_open: {}", std::strerror(err)), context);
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int signal_child(const Child& child, int signal) {
    if (child.reaped) {
        errno = ESRCH;
        return -1;
    }
    if (child.exit_fd_is_pidfd)
        return static_cast<int>(syscall(SYS_pidfd_send_signal, child.exit_fd, signal, nullptr, 0));
    return child.pid > 0 ? kill(child.pid, signal) : -1;
}

std::string describe_wait_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return fmt::format("killed by signal {} ({})", WTERMSIG(status),
                           strsignal(WTERMSIG(status)));
    return fmt::format("ended with wait status {:#x}", status);
}

}  // namespace qshim::launcher::detail
