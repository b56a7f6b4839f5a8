// KubeVirt manifests (kubevirt.io/v1 VirtualMachineInstance and VirtualMachine) as qshim specs.
// The manifest is read with its own paths in every message and turned into a spec document
// (a Node tree whose nodes keep the manifest's positions), which the spec reader then checks
// like any other. docs/kubevirt.md is the field-by-field contract.
#pragma once

#include <qshim/spec.hpp>
#include <string>
#include <utility>
#include <vector>

#include "spec/decoder.hpp"

namespace qshim::spec::detail {

struct Converted {
    Node spec;  // a qshim spec document
    // (spec path, manifest path) prefixes: "disks[0]" came from "spec.domain.devices.disks[2]".
    // The spec reader's messages are rewritten with them, so they name the manifest's fields.
    std::vector<std::pair<std::string, std::string>> origins;
};

// Whether the document's top is a map with apiVersion or kind.
bool is_manifest(const Node& root);

// Converts a manifest; every problem (a field qshim does not support, a volume no disk uses,
// another kind) is added to `diags` at the manifest's path, and nothing is returned then.
// With `pins`, every device takes the place that libvirt domain gave it (machine.layout:
// libvirt); what the domain has and the spec cannot keep is added to `notes`.
struct Domain;
std::optional<Converted> convert_manifest(Diagnostics& diags, const Node& root,
                                          const VolumeRoots& roots, const Domain* pins = nullptr,
                                          std::vector<std::string>* notes = nullptr);

// Rewrites a spec path ("disks[0].serial") to the manifest's ("spec.domain.devices.disks[2]
// .serial") by the longest matching origin.
std::string manifest_path(const Converted& c, const std::string& spec_path);

}  // namespace qshim::spec::detail
