// What a VM's pod must be given: CPUs, memory (guest RAM plus a measured overhead), huge pages,
// and the memlock limit. `qshim plan` prints it; docs/plan.md explains the model.
#pragma once

#include <cstdint>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <vector>

namespace qshim::launcher {

// What TCG's translation cache (translated guest code) held at the peak of the measured boots.
// QEMU's cache grows with the code a guest runs, up to 1 GiB; a long-lived TCG guest can pass
// this (docs/plan.md). Without KVM only.
inline constexpr uint64_t tcg_translation_cache_bytes = uint64_t{50} << 20;

// One term of the memory overhead, in bytes, with what it is for.
struct OverheadTerm {
    std::string name;  // "qemu", "vcpus", "devices", ... (docs/plan.md)
    uint64_t bytes = 0;
    std::string why;  // "9 MiB x 2 vCPUs"
};

struct ResourcePlan {
    // CPUs: the vCPUs, plus the emulator's with isolateEmulatorThread. Dedicated CPUs need
    // whole CPUs with limits equal to requests (the kubelet's static CPU manager).
    unsigned cpus = 1;
    bool dedicated = false;
    // Memory the pod is charged for: guest RAM (unless it is in huge pages) plus the overhead.
    uint64_t memory_bytes = 0;
    uint64_t guest_ram_bytes = 0;
    std::vector<OverheadTerm> overhead;
    uint64_t overhead_bytes = 0;
    // Huge pages the pod needs, of hugepage_size bytes each (0: none).
    uint64_t hugepage_size = 0;
    uint64_t hugepages_bytes = 0;
    // RLIMIT_MEMLOCK QEMU needs; 0: the default is enough (no VFIO device).
    uint64_t memlock_bytes = 0;
};

struct PlanInputs {
    // The size of boot.kernel plus boot.initrd, for planning where those files are not (a
    // controller planning a pod before its volume exists). Unset: read from the files.
    std::optional<uint64_t> boot_files_bytes;
};

// The plan for a spec and its topology (devices are counted from the topology, hotplug ports as
// devices to come). Reads the sizes of boot.kernel and boot.initrd, which QEMU keeps a copy of,
// unless given; an unreadable one is an error (Errc::io) naming it.
QSHIM_API Result<ResourcePlan> plan_resources(const spec::VmSpec& spec,
                                              const topology::Topology& topology,
                                              const PlanInputs& inputs = {});

// RLIMIT_MEMLOCK for QEMU: guest RAM + 1 GiB with a VFIO host device (libvirt's rule: all of RAM
// is pinned for DMA, plus room for the IOMMU's own mappings); 0 otherwise. Huge pages need none:
// they are never swapped, and a hugetlb memfd is not locked memory.
QSHIM_API uint64_t memlock_needed(const spec::VmSpec& spec);

// Renderings: for people, JSON (docs/plan.md), and a Kubernetes `resources:` block.
QSHIM_API std::string to_text(const ResourcePlan& plan, const spec::VmSpec& spec);
QSHIM_API std::string to_json(const ResourcePlan& plan);
QSHIM_API std::string to_k8s(const ResourcePlan& plan);

}  // namespace qshim::launcher
