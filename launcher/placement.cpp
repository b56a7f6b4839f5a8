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

// A host core (a set of SMT siblings) with the CPUs of it that the cpuset holds, in the order
// cores are handed out: by NUMA node, package, then first sibling.
struct Core {
    unsigned node = 0;
    std::vector<unsigned> cpus;
};

std::vector<Core> usable_cores(const CpuSet& cpus, const cgroups::HostTopology& host) {
    // Keyed by the kernel's sibling list, not core_id: core ids repeat across the dies and
    // clusters of one package on many machines.
    std::map<std::tuple<unsigned, unsigned, unsigned>, std::vector<unsigned>> by_core;
    for (const auto& c : host.cpus) {
        if (!cpus.count(c.id)) continue;
        unsigned first = c.siblings.empty() ? c.id : *c.siblings.begin();
        by_core[{c.node, c.package, first}].push_back(c.id);
    }
    std::vector<Core> cores;
    for (auto& [key, ids] : by_core) {
        std::sort(ids.begin(), ids.end());
        cores.push_back({std::get<0>(key), std::move(ids)});
    }
    return cores;
}

// vCPUs on `cores` (whole cores first, in order; the guest's threads of one core on SMT siblings
// of one host core), never on `skip`. Empty when they do not fit.
std::vector<unsigned> fill(const std::vector<Core>& cores, unsigned vcpus, unsigned threads,
                           std::optional<unsigned> skip) {
    std::vector<unsigned> out;
    for (const auto& core : cores) {
        std::vector<unsigned> free;
        for (unsigned c : core.cpus)
            if (c != skip) free.push_back(c);
        if (threads == 1) {
            for (unsigned c : free)
                if (out.size() < vcpus) out.push_back(c);
        } else if (free.size() >= threads && out.size() < vcpus) {
            out.insert(out.end(), free.begin(), free.begin() + threads);
        }
    }
    if (out.size() < vcpus) return {};
    return out;
}

// The vCPUs in one NUMA node when one can hold them all (memory stays local), else across nodes.
std::vector<unsigned> fill_nodes(const std::vector<Core>& cores, unsigned vcpus, unsigned threads,
                                 std::optional<unsigned> skip) {
    std::set<unsigned> nodes;
    for (const auto& c : cores) nodes.insert(c.node);
    for (unsigned node : nodes) {
        std::vector<Core> in_node;
        for (const auto& c : cores)
            if (c.node == node) in_node.push_back(c);
        if (auto got = fill(in_node, vcpus, threads, skip); !got.empty()) return got;
    }
    return fill(cores, vcpus, threads, skip);
}

Result<Placement> dedicated(const spec::VmSpec& spec, const cgroups::Limits& limits,
                            const cgroups::HostTopology& host) {
    const unsigned vcpus = spec.cpu.count();
    const bool isolate = spec.cpu.isolate_emulator_thread;
    const unsigned need = vcpus + (isolate ? 1 : 0);
    CpuSet usable;
    for (unsigned c : limits.cpus)
        if (host.cpu(c)) usable.insert(c);
    if (usable.size() < need)
        return refuse("cpu.dedicated",
                      fmt::format("the VM needs {} host CPUs ({} vCPUs{}), but {} has {} online",
                                  need, vcpus, isolate ? " + 1 for the emulator thread" : "",
                                  cpuset_text(limits), usable.size()));
    const std::vector<Core> cores = usable_cores(usable, host);
    const unsigned threads = spec.cpu.threads;
    Placement p;
    if (!isolate) {
        p.vcpus = fill_nodes(cores, vcpus, threads, std::nullopt);
        p.emulator = CpuSet(p.vcpus.begin(), p.vcpus.end());
    } else {
        // Every CPU is tried as the emulator's, the vCPUs placed without it; the best is, in
        // order: on a core no vCPU uses (a sibling would share the core's caches and execution
        // units with a vCPU), on vCPU 0's node (the emulator does the guest's I/O, into its
        // memory), on the smallest core (a partial core the kubelet handed out), the last core,
        // the lowest CPU.
        using Score = std::tuple<int, int, size_t, size_t, unsigned>;
        std::optional<Score> best;
        for (size_t i = 0; i < cores.size(); ++i) {
            for (unsigned c : cores[i].cpus) {
                auto got = fill_nodes(cores, vcpus, threads, c);
                if (got.empty()) continue;
                const auto& mine = cores[i].cpus;
                bool shares = std::any_of(got.begin(), got.end(), [&](unsigned v) {
                    return std::find(mine.begin(), mine.end(), v) != mine.end();
                });
                const auto* first = host.cpu(got.front());
                bool other_node = first && first->node != cores[i].node;
                Score score{shares ? 1 : 0, other_node ? 1 : 0, mine.size(), cores.size() - i, c};
                if (best && !(score < *best)) continue;
                best = score;
                p.vcpus = std::move(got);
                p.emulator = {c};
            }
        }
    }
    if (p.vcpus.empty()) {
        unsigned fit = 0;
        for (const auto& c : cores) fit += c.cpus.size() >= threads ? 1 : 0;
        return refuse("cpu.threads",
                      fmt::format("each guest core's {} threads must be SMT siblings of one host "
                                  "core, and the VM has {} cores; {} holds {} host cores with {} "
                                  "siblings in it{}",
                                  threads, vcpus / threads, cpuset_text(limits), fit, threads,
                                  isolate ? " (besides the emulator's CPU)" : ""));
    }
    p.iothreads = p.emulator;
    return p;
}

Result<Placement> pinned_by_hand(const spec::VmSpec& spec, const cgroups::Limits& limits,
                                 const cgroups::HostTopology& host) {
    const spec::CpuPinning& pin = *spec.cpu.pinning;
    for (size_t i = 0; i < pin.vcpus.size(); ++i) {
        if (limits.cpus.count(pin.vcpus[i]) && !host.cpu(pin.vcpus[i]))
            return refuse(fmt::format("cpu.pinning.vcpus[{}]", i),
                          fmt::format("host CPU {} is offline", pin.vcpus[i]));
        if (!limits.cpus.count(pin.vcpus[i]))
            return refuse(
                fmt::format("cpu.pinning.vcpus[{}]", i),
                fmt::format("host CPU {} is outside {}", pin.vcpus[i], cpuset_text(limits)));
    }
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
    std::map<unsigned, CpuSet> nodes_of;  // guest socket -> host nodes
    const unsigned per_socket = spec.cpu.cores * spec.cpu.threads;
    for (unsigned v = 0; v < p.vcpus.size(); ++v) {
        const auto* cpu = host.cpu(p.vcpus[v]);
        if (!cpu)
            return refuse("numa.guestNodes",
                          fmt::format("auto: vCPU {}'s host CPU {} is offline", v, p.vcpus[v]));
        vcpus_of[cpu->node].insert(v);
        nodes_of[v / per_socket].insert(cpu->node);
    }
    // A guest socket shares its last-level cache: split over two nodes, guests (Linux warns
    // "llc-sibling ... not on the same node") ignore the layout.
    for (const auto& [socket, nodes] : nodes_of)
        if (nodes.size() > 1)
            return refuse("numa.guestNodes",
                          fmt::format("auto: the vCPUs of guest socket {} landed on host nodes {}; "
                                      "a guest socket must sit in one node. Give the VM one "
                                      "socket per host node (cpu.sockets)",
                                      socket, to_cpu_list(nodes)));
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
        auto h = pinned_by_hand(spec, limits, host);
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
