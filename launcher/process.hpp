// Spawning a child whose argv, environment and fds are all planned before fork.
#pragma once

#include <sys/types.h>

#include <qshim/error.hpp>
#include <string>
#include <vector>

namespace qshim::launcher::detail {

// What the child gets. target fds are numbered from 0 without gaps (0, 1, 2, then 3.. for
// inherited sockets) so the child can close everything above them with one close_range.
struct SpawnPlan {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // NAME=value
    std::vector<int> fds;          // fds[i] becomes fd i in the child
};

struct Child {
    pid_t pid = -1;
    int pidfd = -1;  // readable once the child has exited; owned by the caller
};

// Forks and execs. Nothing is allocated between fork and exec: the pointer arrays are built
// first. The child dies with SIGKILL if the parent dies (PR_SET_PDEATHSIG), so no QEMU outlives
// qshim. Linux ties that signal to the *thread* that forked: spawn from a thread that lives as
// long as the VM (qshim's single event-loop thread does). exec failure is reported through a
// CLOEXEC pipe as errno, so "binary not found" is an Error here rather than a mysterious exit
// status later.
Result<Child> spawn(const SpawnPlan& plan);

// pidfd_open/pidfd_send_signal as raw syscalls: glibc 2.36's <sys/pidfd.h> declares them without
// extern "C", so C++ callers fail to link against it.
int pidfd_open(pid_t pid);
int pidfd_kill(int pidfd, int signal);

// A description of how a process ended: "exited with status 1", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

}  // namespace qshim::launcher::detail
