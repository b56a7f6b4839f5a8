// The guest ABI of a VM as a list of facts, compared before a migration moves any RAM.
#pragma once

#include <qshim/export.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qshim::topology {

// Everything a guest can see that must be equal on both sides of a migration: the topology
// version, the versioned machine type, CPU model and shape, memory size, guest NUMA nodes, and
// every controller's and device's address, model, serial and MAC. Host-side settings (image
// paths, sockets, network backends, pinning, huge pages, IOThreads) are not part of it: they
// may differ between source and target. Facts are "key value" pairs in a fixed order, e.g.
// {"disks[data]", "0000:03:00.0"}, {"disks[data].model", "virtio-blk-pci"}.
struct Fingerprint {
    std::vector<std::pair<std::string, std::string>> facts;
    // A name-based UUID (SHA-1) over the facts: equal digests, equal guest ABI.
    std::string digest;
};

QSHIM_API Fingerprint fingerprint(const spec::VmSpec& spec, const Topology& topology);

// Every fact that differs, as "disks[data]: 0000:03:00.0 here, 0000:04:00.0 there" (a fact on
// one side only reads "absent"). Empty: the two are the same guest.
QSHIM_API std::vector<std::string> compare(const Fingerprint& here, const Fingerprint& there);

// The digest of a list of facts (what fingerprint() puts in `digest`).
QSHIM_API std::string fingerprint_digest(
    const std::vector<std::pair<std::string, std::string>>& facts);

}  // namespace qshim::topology
