// Putting QEMU's threads where a Placement says, checking they are still there, and the small
// state machine that decides when to do it again.
#pragma once

#include <sys/types.h>

#include <qshim/placement.hpp>
#include <string>
#include <vector>

namespace qshim::launcher::detail {

// QEMU's threads that have a place of their own (from query-cpus-fast and query-iothreads).
struct QemuThreads {
    std::vector<pid_t> vcpus;                              // by vCPU index
    std::vector<std::pair<std::string, pid_t>> iothreads;  // (id, thread id)
};

// Whether the VM's threads are where the placement puts them.
enum class PlacementState {
    unpinned,  // the spec pins nothing: the kernel schedules every thread in the cpuset
    planned,   // planned before launch; QEMU's threads are not placed yet
    placed,    // every thread is where the current placement says
    failed,    // the cpuset changed and cannot hold the placement; threads are where the kernel
               // left them, until a later cpuset can hold it again
};
const char* to_string(PlacementState state);

// What happens to a placement. One transition table, like the VM's lifecycle.
enum class PlacementInput {
    applied,     // the placement was (re)applied to every thread
    impossible,  // the current cpuset cannot hold the placement
};
PlacementState next_state(PlacementState from, PlacementInput input);

// Every thread of `pid` (from /proc/PID/task, under `proc_root`): vCPU threads on their CPU,
// IOThreads on the IOThread CPUs, all others on the emulator CPUs. A thread that is gone by the
// time it is set (QEMU's worker pools come and go) is skipped. Errors name the thread.
Result<void> apply_placement(pid_t pid, const QemuThreads& threads, const Placement& placement,
                             const std::string& proc_root = "");

// True when every vCPU thread and IOThread of `pid` has exactly its CPUs, and every other thread
// runs within the emulator's and IOThreads' CPUs (QEMU's I/O workers for an IOThread's disks are
// started by that IOThread and inherit its CPUs): false after the kernel reset their affinity (a
// cpuset write resets every task of the cgroup).
bool placement_holds(pid_t pid, const QemuThreads& threads, const Placement& placement,
                     const std::string& proc_root = "");

// The CPUs the placement gives thread `tid` of that process.
cgroups::CpuSet planned_cpus(pid_t tid, const QemuThreads& threads, const Placement& placement);

// The threads of a process (empty when it is gone), a thread's CPUs and its name (comm).
std::vector<pid_t> list_threads(pid_t pid, const std::string& proc_root = "");
cgroups::CpuSet thread_cpus(pid_t tid);
std::string thread_name(pid_t pid, pid_t tid, const std::string& proc_root = "");

}  // namespace qshim::launcher::detail
