// apply_placement(), placement_holds(): sched_setaffinity on each of QEMU's threads. Same uid
// as QEMU (a pod) needs no capability; another uid (qshim as root) needs CAP_SYS_NICE.
#include "launcher/cpu_placement.hpp"

#include <dirent.h>
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>

namespace qshim::launcher::detail {

using cgroups::CpuSet;

const char* to_string(PlacementState state) {
    switch (state) {
        case PlacementState::unpinned:
            return "unpinned";
        case PlacementState::planned:
            return "planned";
        case PlacementState::placed:
            return "placed";
        case PlacementState::failed:
            return "failed";
    }
    return "?";
}

PlacementState next_state(PlacementState from, PlacementInput input) {
    if (from == PlacementState::unpinned) return from;  // nothing to place, ever
    return input == PlacementInput::applied ? PlacementState::placed : PlacementState::failed;
}

namespace {

struct Mask {
    std::unique_ptr<cpu_set_t, void (*)(cpu_set_t*)> set{nullptr,
                                                         [](cpu_set_t* s) { CPU_FREE(s); }};
    size_t size = 0;
    explicit Mask(unsigned count) : set(CPU_ALLOC(count), [](cpu_set_t* s) { CPU_FREE(s); }) {
        size = CPU_ALLOC_SIZE(count);
        CPU_ZERO_S(size, set.get());
    }
};

// Large enough for any CPU number the kernel uses (NR_CPUS is at most 8192).
constexpr unsigned mask_cpus = 8192;

Mask to_mask(const CpuSet& cpus) {
    Mask m(mask_cpus);
    for (unsigned c : cpus)
        if (c < mask_cpus) CPU_SET_S(c, m.size, m.set.get());
    return m;
}

}  // namespace

std::vector<pid_t> list_threads(pid_t pid, const std::string& proc_root) {
    std::vector<pid_t> tids;
    std::string dir = fmt::format("{}/proc/{}/task", proc_root, pid);
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
    if (!d) return tids;
    while (dirent* e = readdir(d.get())) {
        pid_t tid = 0;
        std::string_view name(e->d_name);
        auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), tid);
        if (ec == std::errc() && end == name.data() + name.size()) tids.push_back(tid);
    }
    std::sort(tids.begin(), tids.end());
    return tids;
}

CpuSet thread_cpus(pid_t tid) {
    Mask m(mask_cpus);
    CpuSet cpus;
    if (sched_getaffinity(tid, m.size, m.set.get()) != 0) return cpus;
    for (unsigned c = 0; c < mask_cpus; ++c)
        if (CPU_ISSET_S(c, m.size, m.set.get())) cpus.insert(c);
    return cpus;
}

std::string thread_name(pid_t pid, pid_t tid, const std::string& proc_root) {
    std::ifstream in(fmt::format("{}/proc/{}/task/{}/comm", proc_root, pid, tid));
    std::string name;
    std::getline(in, name);
    return name;
}

CpuSet planned_cpus(pid_t tid, const QemuThreads& threads, const Placement& placement) {
    for (size_t i = 0; i < threads.vcpus.size() && i < placement.vcpus.size(); ++i)
        if (threads.vcpus[i] == tid) return {placement.vcpus[i]};
    for (const auto& io : threads.iothreads)
        if (io.second == tid) return placement.iothreads;
    return placement.emulator;
}

Result<void> apply_placement(pid_t pid, const QemuThreads& threads, const Placement& placement,
                             const std::string& proc_root) {
    if (!placement.pinned()) return {};
    for (pid_t tid : list_threads(pid, proc_root)) {
        CpuSet cpus = planned_cpus(tid, threads, placement);
        Mask m = to_mask(cpus);
        if (sched_setaffinity(tid, m.size, m.set.get()) == 0 || errno == ESRCH) continue;
        int err = errno;
        return make_error(Errc::launch,
                          fmt::format("sched_setaffinity of QEMU's thread {} ({}) to CPUs {}: {}{}",
                                      tid, thread_name(pid, tid, proc_root),
                                      cgroups::to_cpu_list(cpus), std::strerror(err),
                                      err == EPERM ? " (QEMU runs as another uid: qshim needs "
                                                     "CAP_SYS_NICE)"
                                                   : ""),
                          "placing the VM's CPUs");
    }
    return {};
}

bool placement_holds(pid_t pid, const QemuThreads& threads, const Placement& placement,
                     const std::string& proc_root) {
    if (!placement.pinned()) return true;
    CpuSet others = placement.emulator;
    others.insert(placement.iothreads.begin(), placement.iothreads.end());
    auto own = [&](pid_t tid) {
        if (std::find(threads.vcpus.begin(), threads.vcpus.end(), tid) != threads.vcpus.end())
            return true;
        for (const auto& io : threads.iothreads)
            if (io.second == tid) return true;
        return false;
    };
    for (pid_t tid : list_threads(pid, proc_root)) {
        CpuSet now = thread_cpus(tid);
        if (now.empty()) continue;  // gone meanwhile
        if (own(tid) ? now != planned_cpus(tid, threads, placement)
                     : !std::includes(others.begin(), others.end(), now.begin(), now.end()))
            return false;
    }
    return true;
}

}  // namespace qshim::launcher::detail
