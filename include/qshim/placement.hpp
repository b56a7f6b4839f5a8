// Where a VM's threads run: each vCPU on its host CPU, QEMU's other threads and IOThreads on
// theirs, and the guest's NUMA nodes; planned from the spec, qshim's cpuset and the host topology.
#pragma once

#include <qshim/cgroups.hpp>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/spec.hpp>
#include <vector>

namespace qshim::launcher {

struct Placement {
    // The host CPU of vCPU 0, 1, ...; empty when the spec pins nothing (cpu.dedicated and
    // cpu.pinning unset): the kernel then schedules every thread anywhere in the cpuset.
    std::vector<unsigned> vcpus;
    cgroups::CpuSet emulator;   // every thread of QEMU that is not a vCPU or an IOThread
    cgroups::CpuSet iothreads;  // every IOThread
    // The guest NUMA nodes (numa.guestNodes, with auto resolved); empty: no NUMA.
    std::vector<spec::NumaNode> numa;
    cgroups::CpuSet cpuset;  // the cpuset it was planned in
    bool pinned() const { return !vcpus.empty(); }
};

// Plans the placement (docs/placement.md). cpu.dedicated takes CPUs of `limits.cpus` that the
// host has online, ordered by NUMA node, package and core, so vCPUs fill whole cores and as few
// nodes as possible; guest threads of one core (cpu.threads > 1) land on SMT siblings of one host
// core. cpu.isolateEmulatorThread takes one more CPU, off the vCPUs' cores when the cpuset allows.
// cpu.pinning is checked against the cpuset. numa.guestNodes auto becomes one guest node per host
// node of the vCPUs' CPUs, memory split by vCPU count and bound to that node.
// Errors (Errc::invalid_spec, naming the field and the cpuset): too few CPUs, CPUs or memory nodes
// outside the cpuset, siblings that cannot be kept together.
QSHIM_API Result<Placement> plan_placement(const spec::VmSpec& spec, const cgroups::Limits& limits,
                                           const cgroups::HostTopology& host);

// The spec with numa.guestNodes auto replaced by the planned nodes: what QEMU's command line is
// built from, and what a migration target must be given to keep the guest's NUMA layout.
QSHIM_API spec::VmSpec resolve_numa(spec::VmSpec spec, const Placement& placement);

}  // namespace qshim::launcher
