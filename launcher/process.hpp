// Spawning a child whose argv, environment and fds are all planned before fork.
#pragma once

#include <sys/types.h>

#include <qshim/error.hpp>
#include <string>
#include <vector>

#include "launcher/sandbox.hpp"

namespace qshim::launcher::detail {

// What the child gets. target fds are numbered from 0 without gaps (0, 1, 2, then 3.. for
// inherited sockets) so the child can close everything above them with one close_range.
struct SpawnPlan {
    std::vector<std::string> argv;
    std::vector<std::string> env;          // NAME=value
    std::vector<int> fds;                  // fds[i] becomes fd i in the child
    const SandboxPlan* sandbox = nullptr;  // applied in the child before exec; null: none
    // The CPUs the child (and every thread it ever creates) may run on; empty: inherited.
    std::vector<unsigned> affinity;
};

struct Child {
    pid_t pid = -1;
    // Readable once the child has exited; owned by the caller, who still reaps the child. A pidfd
    // where the kernel has pidfd_open (Linux 5.3); otherwise (older kernels, valgrind) the read
    // end of a pipe that a waiter thread closes when the child exits (waitid WNOWAIT).
    int exit_fd = -1;
    bool exit_fd_is_pidfd = false;
    bool reaped = false;  // set by whoever reaps it: its pid may then belong to another process
};

// Sends a signal to a child that has not been reaped yet: through its pidfd when it has one,
// else by pid (safe: an unreaped child's pid cannot be reused). A reaped child: -1, ESRCH.
int signal_child(const Child& child, int signal);

// `name` as execve needs it: a name without '/' searched in PATH (empty when absent there); a
// path as it is.
std::string find_program(const std::string& name);

// Forks and execs. Nothing is allocated between fork and exec: the pointer arrays are built
// first. The child dies with SIGKILL if the parent dies (PR_SET_PDEATHSIG), so no QEMU outlives
// qshim. Linux ties that signal to the *thread* that forked: spawn from a thread that lives as
// long as the VM (qshim's single event-loop thread does). exec failure is reported through a
// CLOEXEC pipe as errno, so "binary not found" (or a sandbox step the kernel refused) is an Error
// here rather than a mysterious exit status later.
Result<Child> spawn(const SpawnPlan& plan);

// The fallback for kernels (and valgrind) without pidfd_open: an fd that becomes readable when
// `pid` (a child of ours) exits, without reaping it. Owned by the caller.
Result<int> exit_fd_without_pidfd(pid_t pid);

// pidfd_open/pidfd_send_signal as raw syscalls: glibc 2.36's <sys/pidfd.h> declares them without
// extern "C", so C++ callers fail to link against it.
int pidfd_open(pid_t pid);

// A description of how a process ended: "exited with status 1", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

}  // namespace qshim::launcher::detail
