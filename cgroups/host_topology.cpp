// read_host_topology(): CPUs, cores, SMT siblings and NUMA nodes from /sys/devices/system.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <qshim/cgroups.hpp>
#include <sstream>

#include "cgroups/files.hpp"

namespace qshim::cgroups {

namespace {

// A small decimal in a sysfs file; an absent file gives `fallback`. (-1, as physical_package_id
// reads on some machines, counts as 0.)
Result<unsigned> number_in(const std::string& path, unsigned fallback) {
    auto text = detail::read_optional(path);
    if (!text) return std::move(text).error();
    if (!*text) return fallback;
    if (**text == "-1") return 0u;
    unsigned value = 0;
    auto [end, ec] = std::from_chars((*text)->data(), (*text)->data() + (*text)->size(), value);
    if (ec != std::errc() || end != (*text)->data() + (*text)->size())
        return make_error(Errc::io, fmt::format("{}: not a number: '{}'", path, **text));
    return value;
}

// "Node 0 MemTotal:       16337700 kB" in nodeN/meminfo, "MemTotal: ... kB" in /proc/meminfo.
Result<uint64_t> mem_total(const std::string& path) {
    auto text = detail::read_required(path);
    if (!text) return std::move(text).error();
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
        auto at = line.find("MemTotal:");
        if (at == std::string::npos) continue;
        std::istringstream fields(line.substr(at + 9));
        uint64_t kib = 0;
        if (fields >> kib) return kib * 1024;
    }
    return make_error(Errc::io, fmt::format("{}: no MemTotal line", path));
}

}  // namespace

const HostCpu* HostTopology::cpu(unsigned id) const {
    for (const auto& c : cpus)
        if (c.id == id) return &c;
    return nullptr;
}

Result<HostTopology> read_host_topology(const Roots& roots) {
    const std::string context = "reading the host's CPU topology";
    const std::string sys = roots.root + "/sys/devices/system";
    auto fail = [&](const Error& e) { return make_error(Errc::io, e.message, context); };
    auto online = detail::read_cpu_list(sys + "/cpu/online");
    if (!online) return fail(online.error());
    if (!*online || (*online)->empty())
        return make_error(Errc::io, sys + "/cpu/online: missing or empty", context);
    HostTopology host;
    for (unsigned id : **online) {
        const std::string dir = fmt::format("{}/cpu/cpu{}/topology", sys, id);
        HostCpu cpu;
        cpu.id = id;
        auto package = number_in(dir + "/physical_package_id", 0);
        auto core = number_in(dir + "/core_id", id);
        if (!package) return fail(package.error());
        if (!core) return fail(core.error());
        cpu.package = *package;
        cpu.core = *core;
        // core_cpus_list is the newer name (5.4); thread_siblings_list the one every kernel has.
        auto siblings = detail::read_cpu_list(dir + "/thread_siblings_list");
        if (!siblings) return fail(siblings.error());
        cpu.siblings = siblings->value_or(CpuSet{id});
        cpu.siblings.insert(id);
        host.cpus.push_back(std::move(cpu));
    }
    auto nodes = detail::read_cpu_list(sys + "/node/online");
    if (!nodes) return fail(nodes.error());
    if (!*nodes) {
        // A kernel without NUMA: one node holding everything.
        HostNode node;
        for (const auto& c : host.cpus) node.cpus.insert(c.id);
        auto total = mem_total(roots.root + "/proc/meminfo");
        if (!total) return fail(total.error());
        node.memory_bytes = *total;
        host.nodes.push_back(std::move(node));
        return host;
    }
    for (unsigned id : **nodes) {
        HostNode node;
        node.id = id;
        const std::string dir = fmt::format("{}/node/node{}", sys, id);
        auto cpus = detail::read_cpu_list(dir + "/cpulist");
        if (!cpus) return fail(cpus.error());
        for (unsigned c : cpus->value_or(CpuSet{}))
            if (std::any_of(host.cpus.begin(), host.cpus.end(),
                            [c](const HostCpu& h) { return h.id == c; }))
                node.cpus.insert(c);  // only online CPUs
        auto total = mem_total(dir + "/meminfo");
        if (!total) return fail(total.error());
        node.memory_bytes = *total;
        for (auto& c : host.cpus)
            if (node.cpus.count(c.id)) c.node = id;
        host.nodes.push_back(std::move(node));
    }
    return host;
}

}  // namespace qshim::cgroups
