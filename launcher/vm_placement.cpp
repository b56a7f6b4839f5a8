// Vm::Impl's CPU placement: planned before QEMU starts, applied while it is paused, and applied
// again whenever the cpuset changes or the kernel resets the threads' affinity.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <qshim/log.hpp>

#include "common/spawn.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using launcher::detail::PlacementInput;
using launcher::detail::PlacementState;
using nlohmann::json;

namespace {

bool needs_host(const spec::VmSpec& spec) {
    if (spec.cpu.pinned() || spec.numa.automatic) return true;
    for (const auto& n : spec.numa.nodes)
        if (n.host_nodes) return true;
    return false;
}

// A thread id from QMP; 0 when missing or not positive (0 would make sched_setaffinity act on
// qshim itself).
pid_t thread_id(const json& entry) {
    auto it = entry.find("thread-id");
    if (it == entry.end() || !it->is_number_integer() || it->get<long long>() <= 0) return 0;
    return it->get<pid_t>();
}

// Huge pages are taken when QEMU maps guest RAM; too few free ones would fail QEMU later with
// "cannot allocate memory", or, without prealloc, SIGBUS the guest when it touches the rest.
Result<void> check_hugepages(const spec::VmSpec& spec, const std::string& root,
                             const std::string& context) {
    const uint64_t page = spec.memory.hugepage_bytes;
    if (!page) return {};
    const std::string dir =
        fmt::format("{}/sys/kernel/mm/hugepages/hugepages-{}kB", root, page >> 10);
    // Free pages promised to mappings already made are not free for us (resv_hugepages).
    std::ifstream in(dir + "/free_hugepages"), reserved(dir + "/resv_hugepages");
    uint64_t free = 0, promised = 0;
    if (reserved) reserved >> promised;
    if (!(in >> free))
        return make_error(Errc::launch,
                          fmt::format("memory.hugepages: this kernel has no {} huge pages ({} "
                                      "cannot be read)",
                                      page == (2u << 20) ? "2Mi" : "1Gi", dir + "/free_hugepages"),
                          context);
    const uint64_t need = spec.memory.size_bytes / page;
    free = free > promised ? free - promised : 0;
    if (free < need)
        return make_error(
            Errc::launch,
            fmt::format("memory.hugepages: the guest needs {} huge pages of {} MiB, and the host "
                        "has {} free ({}); reserve more (nr_hugepages) or give the pod them",
                        need, page >> 20, free, dir + "/free_hugepages"),
            context);
    return {};
}

}  // namespace

// Reads qshim's cgroup and the host's CPUs only when the spec pins something or binds memory;
// checks the host has the huge pages the spec asks for.
Result<void> Vm::Impl::plan_host(const std::string& context) {
    placement_ = {};
    placement_.numa = spec_.numa.nodes;
    if (auto ok = check_hugepages(spec_, options_.system_root, context); !ok) return ok;
    if (!needs_host(spec_)) return {};
    const cgroups::Roots roots{options_.system_root};
    auto limits = cgroups::discover(roots);
    if (!limits) return make_error(Errc::launch, limits.error().what(), context);
    auto host = cgroups::read_host_topology(roots);
    if (!host) return make_error(Errc::launch, host.error().what(), context);
    auto planned = launcher::plan_placement(spec_, *limits, *host);
    if (!planned) {
        Error e = std::move(planned).error();
        e.context = context;
        return e;
    }
    for (const auto& note : limits->notes) log::write("placement", log::Level::info, note);
    limits_ = std::move(*limits);
    host_ = std::move(*host);
    placement_ = std::move(*planned);
    if (placement_.pinned()) placement_state_ = PlacementState::planned;
    return {};
}

// QEMU is paused: its vCPU threads and IOThreads exist but have not run guest code yet. Their
// thread ids are read for every VM (GET /v1/vm/cpus); only a pinned VM fails to launch when they
// cannot be read.
asio::awaitable<Result<void>> Vm::Impl::place_threads() {
    auto threads = co_await read_threads();
    if (!threads) {
        if (placement_.pinned()) co_return make_error(Errc::launch, threads.error().message);
        log::write("placement", log::Level::warn,
                   "QEMU's thread ids are unknown, GET /v1/vm/cpus lists none: " +
                       threads.error().message);
        co_return Result<void>{};
    }
    threads_ = std::move(*threads);
    if (!placement_.pinned()) co_return Result<void>{};
    if (threads_.vcpus.size() != placement_.vcpus.size())
        co_return make_error(Errc::launch,
                             fmt::format("QEMU has {} vCPU threads, the placement {} vCPUs",
                                         threads_.vcpus.size(), placement_.vcpus.size()));
    auto ok =
        launcher::detail::apply_placement(child_.pid, threads_, placement_, options_.system_root);
    if (!ok) co_return ok;
    placed("start");
    auto self = shared_from_this();
    qshim::detail::spawn(ex_, watch_placement(self), "watching the CPU placement");
    co_return Result<void>{};
}

asio::awaitable<Result<launcher::detail::QemuThreads>> Vm::Impl::read_threads() {
    auto vcpus = co_await qmp_.execute("query-cpus-fast");
    if (!vcpus) co_return make_error(Errc::launch, "query-cpus-fast: " + vcpus.error().what());
    auto iothreads = co_await qmp_.execute("query-iothreads");
    if (!iothreads)
        co_return make_error(Errc::launch, "query-iothreads: " + iothreads.error().what());
    launcher::detail::QemuThreads threads;
    threads.vcpus.resize(vcpus->size());
    for (const auto& c : *vcpus) {
        auto index = c.value("cpu-index", -1);
        pid_t tid = thread_id(c);
        if (index < 0 || static_cast<size_t>(index) >= threads.vcpus.size() || tid == 0)
            co_return make_error(Errc::launch, "query-cpus-fast: unexpected answer " + c.dump());
        threads.vcpus[static_cast<size_t>(index)] = tid;
    }
    for (const auto& t : *iothreads) {
        pid_t tid = thread_id(t);
        if (tid == 0)
            co_return make_error(Errc::launch, "query-iothreads: unexpected answer " + t.dump());
        threads.iothreads.emplace_back(t.value("id", std::string()), tid);
    }
    co_return threads;
}

void Vm::Impl::placed(const char* reason) {
    placement_state_ = launcher::detail::next_state(placement_state_, PlacementInput::applied);
    placement_error_.clear();
    json vcpus = json::array();
    for (unsigned c : placement_.vcpus) vcpus.push_back(c);
    json data{{"reason", reason},
              {"cpuset", cgroups::to_cpu_list(placement_.cpuset)},
              {"vcpus", vcpus},
              {"emulator", cgroups::to_cpu_list(placement_.emulator)},
              {"iothreads", cgroups::to_cpu_list(placement_.iothreads)}};
    log::write("placement", log::Level::info,
               "threads placed (" + std::string(reason) + "): " + data.dump());
    emit("cpus-placed", std::move(data));
}

// A timer, not inotify: cgroupfs does not report a cpuset that changed because its parent
// shrank, and the kernel resets the threads' affinity without any event either.
asio::awaitable<void> Vm::Impl::watch_placement(std::shared_ptr<Impl> self) {
    // Waiting on `exited_` with a deadline: QEMU's exit ends the watch at once.
    // (Not in the loop's condition: g++ 12 miscompiles a co_await there, SIGILL.)
    for (;;) {
        const bool exited = co_await self->exited_.wait(self->options_.placement_check_interval);
        if (exited) break;
        self->check_placement();
    }
}

void Vm::Impl::check_placement() {
    // QEMU reaped (its pid may be another process's by now) or on its way out: nothing to place.
    if (child_.reaped || exited_.is_set() || !launcher::detail::accepts_changes(phase_)) return;
    auto cpuset = cgroups::read_cpuset(limits_);
    if (!cpuset) {
        log::write("placement", log::Level::warn, cpuset.error().what());
        return;
    }
    auto inside = [&](const cgroups::CpuSet& set) {
        return std::includes(cpuset->begin(), cpuset->end(), set.begin(), set.end());
    };
    const bool still_fits =
        inside(cgroups::CpuSet(placement_.vcpus.begin(), placement_.vcpus.end())) &&
        inside(placement_.emulator) && inside(placement_.iothreads);
    const char* reason = nullptr;
    if (*cpuset != placement_.cpuset && still_fits) {
        // The cpuset changed but still holds every CPU in use: the vCPUs stay where they are
        // (their caches and NUMA node with them). The kernel reset every thread's affinity.
        placement_.cpuset = limits_.cpus = *cpuset;
        reason = "cpuset changed";
    } else if (*cpuset != placement_.cpuset) {
        cgroups::Limits now = limits_;
        now.cpus = *cpuset;
        // The guest's NUMA nodes cannot change under it: re-plan from the resolved spec.
        auto planned = launcher::plan_placement(live_.spec, now, host_);
        if (!planned) {
            placement_.cpuset = *cpuset;  // report it once per change, not once per check
            fail_placement(planned.error().message, "the cpuset changed to " +
                                                        cgroups::to_cpu_list(*cpuset) +
                                                        " and cannot hold the VM: ");
            return;
        }
        limits_ = std::move(now);
        placement_ = std::move(*planned);
        reason = "cpuset changed";
    } else if ((placement_state_ == PlacementState::placed || !apply_error_.empty()) &&
               !launcher::detail::placement_holds(child_.pid, threads_, placement_,
                                                  options_.system_root)) {
        // Placed: the threads must still be where they were put. A failure to set them (not a
        // cpuset too small) is tried again at every check.
        reason = "affinity reset";
    }
    if (!reason) return;
    auto ok =
        launcher::detail::apply_placement(child_.pid, threads_, placement_, options_.system_root);
    if (!ok) {
        apply_error_ = ok.error().message;
        fail_placement(apply_error_, "");
        return;
    }
    apply_error_.clear();
    placed(reason);
}

// Into `failed`, said once per distinct reason (a check every second must not flood the log).
void Vm::Impl::fail_placement(const std::string& message, const std::string& log_prefix) {
    const bool again = placement_state_ == PlacementState::failed && placement_error_ == message;
    placement_state_ = launcher::detail::next_state(placement_state_, PlacementInput::impossible);
    placement_error_ = message;
    if (again) return;
    log::write("placement", log::Level::error, log_prefix + message);
    emit("placement-failed",
         {{"cpuset", cgroups::to_cpu_list(placement_.cpuset)}, {"message", message}});
}

VmCpus Vm::Impl::cpus() const {
    VmCpus out;
    out.placement = launcher::detail::to_string(placement_state_);
    out.error = placement_error_;
    out.cpuset = placement_.cpuset;
    if (phase_ == Phase::created || phase_ == Phase::exited || child_.reaped) return out;
    auto thread = [&](pid_t tid) {
        VmThread t;
        t.thread_id = tid;
        t.name = launcher::detail::thread_name(child_.pid, tid, options_.system_root);
        t.cpus = launcher::detail::thread_cpus(tid);
        if (placement_.pinned())
            t.planned = launcher::detail::planned_cpus(tid, threads_, placement_);
        return t;
    };
    std::set<pid_t> own;
    for (pid_t tid : threads_.vcpus) {
        out.vcpus.push_back(thread(tid));
        own.insert(tid);
    }
    for (const auto& io : threads_.iothreads) {
        out.iothreads.push_back(thread(io.second));
        own.insert(io.second);
    }
    for (pid_t tid : launcher::detail::list_threads(child_.pid, options_.system_root))
        if (!own.count(tid)) out.emulator.push_back(thread(tid));
    return out;
}

}  // namespace qshim
