// What the pod was given: qshim's own cgroup (v1, v2 or hybrid) and the host's CPU and NUMA
// topology, read from /proc and /sys under an injectable root (tests use fake trees).
#pragma once

#include <cstdint>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace qshim::cgroups {

// A set of CPU (or memory node) numbers, as the kernel writes it: "0-3,8,10-11".
using CpuSet = std::set<unsigned>;
QSHIM_API std::optional<CpuSet> parse_cpu_list(std::string_view text);
QSHIM_API std::string to_cpu_list(const CpuSet& cpus);

enum class Mode {
    v1,      // every controller on its own cgroup v1 hierarchy
    v2,      // the unified hierarchy only
    hybrid,  // controllers on v1, plus an empty cgroup2 mount (systemd's "hybrid")
};
QSHIM_API const char* to_string(Mode mode);

struct CpuQuota {
    uint64_t quota_us = 0;  // CPU time per period; quota / period = CPUs' worth
    uint64_t period_us = 100000;
};

struct Limits {
    Mode mode = Mode::v2;
    // The cgroup's effective cpuset (what the kernel lets its tasks run on) and memory nodes. When
    // no cpuset controller is reachable: the host's online CPUs and nodes.
    CpuSet cpus;
    CpuSet mems;
    // The lowest limit on the way from qshim's cgroup up to the hierarchy's root; none: unlimited.
    std::optional<uint64_t> memory_bytes;
    std::optional<CpuQuota> cpu_quota;
    std::optional<uint64_t> pids_max;
    // Where each was read (a folder of the real or fake tree); empty: not available.
    std::string cpuset_dir;
    std::string memory_dir;
    std::string cpu_dir;
    std::string pids_dir;
    // What could not be read and what was assumed instead, for logs ("no cpuset controller: ...").
    std::vector<std::string> notes;
};

struct Roots {
    // Prefixed to every absolute path read: /proc/self/mountinfo, /proc/self/cgroup, the cgroup
    // mount points they name, /sys/devices/system. Empty: the real system.
    std::string root;
};

// Reads qshim's own cgroup. Errors (Errc::io, naming the file) for files that exist but cannot be
// read or parsed; a controller that is absent is a note, not an error.
QSHIM_API Result<Limits> discover(const Roots& roots = {});

// The effective cpuset read again from where discover() found it (limits.cpuset_dir): how a
// supervisor notices the kubelet's CPU manager rewriting it. Without a cpuset folder: limits.cpus.
QSHIM_API Result<CpuSet> read_cpuset(const Limits& limits);

struct HostCpu {
    unsigned id = 0;
    unsigned package = 0;  // socket
    unsigned core = 0;     // core id within its package
    unsigned node = 0;     // NUMA node
    CpuSet siblings;       // SMT threads of its core, itself included
};

struct HostNode {
    unsigned id = 0;
    CpuSet cpus;
    uint64_t memory_bytes = 0;
};

struct HostTopology {
    std::vector<HostCpu> cpus;  // online CPUs, by id
    std::vector<HostNode> nodes;
    QSHIM_API const HostCpu* cpu(unsigned id) const;
};

// The online CPUs with their package, core, SMT siblings and NUMA node, and the NUMA nodes with
// their CPUs and memory, from /sys/devices/system. A machine without NUMA information is one node.
QSHIM_API Result<HostTopology> read_host_topology(const Roots& roots = {});

}  // namespace qshim::cgroups
