// plan_placement(): the host CPUs of each vCPU, of QEMU's other threads and IOThreads, and the
// guest NUMA nodes. Pure: the same spec, cpuset and host give the same placement.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <qshim/placement.hpp>
#include <tuple>

namespace qshim::launcher {

using cgroups::CpuSet;
using cgroups::to_cpu_list;

namespace {

// The message starts with the field, as a spec diagnostic does; the spec itself is valid, it is
// this host or cpuset that cannot hold it.
Error refuse(const std::string& field, const std::string& reason) {
    return make_error(Errc::invalid_spec, field + ": " + reason, "placing the VM's CPUs");
}

std::string cpuset_text(const cgroups::Limits& limits) {
    return fmt::format("qshim's cpuset {}{}", to_cpu_list(limits.cpus),
                       limits.cpuset_dir.empty() ? "" : " (" + limits.cpuset_dir + ")");
}

// A host core with the CPUs of it that the cpuset holds, in the order cores are handed out.
struct Core {
    unsigned node, package, core;
    std::vector<unsigned> cpus;
};

std::vector<Core> usable_cores(const CpuSet& cpus, const cgroups::HostTopology& host) {
    std::map<std::tuple<unsigned, unsigned, unsigned>, std::vector<unsigned>> by_core;
    for (const auto& c : host.cpus)
        if (cpus.count(c.id)) by_core[{c.node, c.package, c.core}].push_back(c.id);
    std::vector<Core> cores;
    for (auto& [key, ids] : by_core) {
        std::sort(ids.begin(), ids.end());
        cores.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), std::move(ids)});
    }
    return cores;
}

Result<Placement> dedicated(const spec::VmSpec& spec, const cgroups::Limits& limits,
                            const cgroups::HostTopology& host) {
    const unsigned vcpus = spec.cpu.count();
    const unsigned need = vcpus + (spec.cpu.isolate_emulator_thread ? 1 : 0);
    CpuSet usable;
    for (unsigned c : limits.cpus)
        if (host.cpu(c)) usable.insert(c);
    if (usable.size() < need)
        return refuse(
            "cpu.dedicated",
            fmt::format("the VM needs {} host CPUs ({} vCPUs{}), but {} has {} online", need, vcpus,
                        spec.cpu.isolate_emulator_thread ? " + 1 for the emulator thread" : "",
                        cpuset_text(limits), usable.size()));
    std::vector<Core> cores = usable_cores(usable, host);
    Placement p;
    std::vector<bool> used(cores.size(), false);
    const unsigned threads = spec.cpu.threads;
    if (threads == 1) {
        // Whole cores first, in order: vCPUs share as few cores and nodes as they can.
        for (size_t i = 0; i < cores.size() && p.vcpus.size() < vcpus; ++i) {
            used[i] = true;
            for (unsigned c : cores[i].cpus)
                if (p.vcpus.size() < vcpus) p.vcpus.push_back(c);
        }
    } else {
        // The guest's threads of one core are SMT siblings of one host core, as it is told.
        for (size_t i = 0; i < cores.size() && p.vcpus.size() < vcpus; ++i) {
            if (cores[i].cpus.size() < threads) continue;
            used[i] = true;
            for (unsigned t = 0; t < threads; ++t) p.vcpus.push_back(cores[i].cpus[t]);
        }
        if (p.vcpus.size() < vcpus) {
            unsigned fit = 0;
            for (const auto& c : cores) fit += c.cpus.size() >= threads ? 1 : 0;
            return refuse("cpu.threads",
                          fmt::format("each guest core's {} threads must be SMT siblings of one "
                                      "host core, and the VM has {} cores; {} holds {} host "
                                      "cores with {} siblings in it",
                                      threads, vcpus / threads, cpuset_text(limits), fit, threads));
        }
    }
    CpuSet vcpu_set(p.vcpus.begin(), p.vcpus.end());
    if (spec.cpu.isolate_emulator_thread) {
        // A CPU on a core no vCPU uses, when there is one: a sibling would share the core's
        // caches and execution units with a vCPU.
        std::optional<unsigned> pick;
        for (size_t i = 0; i < cores.size() && !pick; ++i)
            if (!used[i]) pick = cores[i].cpus.front();
        for (size_t i = 0; i < cores.size() && !pick; ++i)
            for (unsigned c : cores[i].cpus)
                if (!pick && !vcpu_set.count(c)) pick = c;
        p.emulator = {*pick};  // `usable` has need = vcpus + 1 CPUs: one is left
    } else {
        p.emulator = vcpu_set;
    }
    p.iothreads = p.emulator;
    return p;
}

Result<Placement> pinned_by_hand(const spec::VmSpec& spec, const cgroups::Limits& limits) {
    const spec::CpuPinning& pin = *spec.cpu.pinning;
    for (size_t i = 0; i < pin.vcpus.size(); ++i)
        if (!limits.cpus.count(pin.vcpus[i]))
            return refuse(
                fmt::format("cpu.pinning.vcpus[{}]", i),
                fmt::format("host CPU {} is outside {}", pin.vcpus[i], cpuset_text(limits)));
    auto inside = [&](const CpuSet& set, const char* field) -> Result<void> {
        CpuSet outside;
        for (unsigned c : set)
            if (!limits.cpus.count(c)) outside.insert(c);
        if (outside.empty()) return {};
        return refuse(field, fmt::format("host CPUs {} are outside {}", to_cpu_list(outside),
                                         cpuset_text(limits)));
    };
    if (auto ok = inside(pin.emulator, "cpu.pinning.emulator"); !ok) return std::move(ok).error();
    if (auto ok = inside(pin.iothreads, "cpu.pinning.iothreads"); !ok) return std::move(ok).error();
    Placement p;
    p.vcpus = pin.vcpus;
    p.emulator = pin.emulator.empty() ? CpuSet(pin.vcpus.begin(), pin.vcpus.end()) : pin.emulator;
    p.iothreads = pin.iothreads.empty() ? p.emulator : pin.iothreads;
    return p;
}

// One guest node per host node of the vCPUs' CPUs, in host node order; memory split by vCPU
// count in whole pages (2 MiB, or the huge page size), the remainder on the last node.
Result<std::vector<spec::NumaNode>> mirror_nodes(const spec::VmSpec& spec, const Placement& p,
                                                 const cgroups::HostTopology& host) {
    std::map<unsigned, CpuSet> vcpus_of;  // host node -> guest vCPU indices
    for (unsigned v = 0; v < p.vcpus.size(); ++v) {
        const auto* cpu = host.cpu(p.vcpus[v]);
        vcpus_of[cpu ? cpu->node : 0].insert(v);
    }
    const uint64_t page = std::max<uint64_t>(spec.memory.hugepage_bytes, 2u << 20);
    const uint64_t pages = spec.memory.size_bytes / page;
    std::vector<spec::NumaNode> nodes;
    uint64_t given = 0;
    for (const auto& [host_node, vcpus] : vcpus_of) {
        spec::NumaNode n;
        n.vcpus = vcpus;
        n.host_nodes = CpuSet{host_node};
        n.memory_bytes = pages * vcpus.size() / p.vcpus.size() * page;
        given += n.memory_bytes;
        nodes.push_back(std::move(n));
    }
    nodes.back().memory_bytes += spec.memory.size_bytes - given;
    for (auto& n : nodes) {
        if (n.memory_bytes == 0)
            return refuse("numa.guestNodes",
                          fmt::format("auto splits {} over {} nodes, which leaves a node without "
                                      "a whole {} MiB page; give the VM more memory",
                                      spec.memory.size_text, nodes.size(), page >> 20));
        n.memory_text = fmt::format("{}Mi", n.memory_bytes >> 20);
    }
    return nodes;
}

}  // namespace

Result<Placement> plan_placement(const spec::VmSpec& spec, const cgroups::Limits& limits,
                                 const cgroups::HostTopology& host) {
    Placement p;
    if (spec.cpu.dedicated) {
        auto d = dedicated(spec, limits, host);
        if (!d) return d;
        p = std::move(*d);
    } else if (spec.cpu.pinning) {
        auto h = pinned_by_hand(spec, limits);
        if (!h) return h;
        p = std::move(*h);
    }
    p.cpuset = limits.cpus;
    if (spec.numa.automatic) {
        if (!p.pinned())
            return refuse("numa.guestNodes", "auto needs cpu.dedicated or cpu.pinning");
        auto nodes = mirror_nodes(spec, p, host);
        if (!nodes) return std::move(nodes).error();
        p.numa = std::move(*nodes);
    } else {
        p.numa = spec.numa.nodes;
    }
    for (size_t i = 0; i < p.numa.size(); ++i) {
        if (!p.numa[i].host_nodes) continue;
        CpuSet outside;
        for (unsigned n : *p.numa[i].host_nodes)
            if (!limits.mems.count(n)) outside.insert(n);
        if (!outside.empty())
            return refuse(fmt::format("numa.guestNodes[{}].hostNodes", i),
                          fmt::format("host nodes {} are outside qshim's memory nodes {}",
                                      to_cpu_list(outside), to_cpu_list(limits.mems)));
    }
    return p;
}

spec::VmSpec resolve_numa(spec::VmSpec spec, const Placement& placement) {
    if (spec.numa.automatic) {
        spec.numa.automatic = false;
        spec.numa.nodes = placement.numa;
    }
    return spec;
}

}  // namespace qshim::launcher
