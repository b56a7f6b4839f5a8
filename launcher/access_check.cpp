// access_as(): the kernel's answer to "can QEMU open this", asked as QEMU's ids.
#include "launcher/access_check.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "common/unique_fd.hpp"

namespace qshim::launcher::detail {

using qshim::detail::UniqueFd;

namespace {

int check(const char* path, int mode) { return access(path, mode) == 0 ? 0 : errno; }

bool write_all(int fd, const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

}  // namespace

std::string describe(const QemuIdentity& who) {
    return fmt::format("uid {} (QEMU's; gid {}{})", who.ids.uid, who.ids.gid,
                       who.other_than_qshim ? ", no supplementary groups" : "");
}

Result<std::vector<int>> access_as(const QemuIdentity& who,
                                   const std::vector<AccessRequest>& requests) {
    std::vector<int> results(requests.size(), 0);
    if (!who.other_than_qshim) {
        for (size_t i = 0; i < requests.size(); ++i)
            results[i] = check(requests[i].path.c_str(), requests[i].mode);
        return results;
    }
    const std::string context = "checking files as " + describe(who);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return make_error(Errc::io, fmt::format("pipe: {}", std::strerror(errno)), context);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    // Every signal stays blocked in the child, which never unblocks: a Ctrl-C to the process
    // group must not run qshim's handlers (asio's, which write to qshim's own pipe) in it.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    const int fork_errno = errno;
    if (pid != 0) pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0)
        return make_error(Errc::io, fmt::format("fork: {}", std::strerror(fork_errno)), context);
    if (pid == 0) {
        // The child only switches ids and asks; the vector's storage was allocated before fork.
        if (setgroups(0, nullptr) != 0 || setresgid(who.ids.gid, who.ids.gid, who.ids.gid) != 0 ||
            setresuid(who.ids.uid, who.ids.uid, who.ids.uid) != 0)
            _exit(2);
        for (size_t i = 0; i < requests.size(); ++i)
            results[i] = check(requests[i].path.c_str(), requests[i].mode);
        _exit(write_all(write_end.get(), results.data(), results.size() * sizeof(int)) ? 0 : 3);
    }
    write_end.reset();
    size_t want = results.size() * sizeof(int), got = 0;
    char* out = reinterpret_cast<char*>(results.data());
    while (got < want) {
        ssize_t n = read(read_end.get(), out + got, want - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<size_t>(n);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != want || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return make_error(Errc::launch,
                          WIFEXITED(status) && WEXITSTATUS(status) == 2
                              ? "could not switch to QEMU's ids (does qshim hold CAP_SETUID and "
                                "CAP_SETGID?)"
                              : "the checking process failed",
                          context);
    return results;
}

}  // namespace qshim::launcher::detail
