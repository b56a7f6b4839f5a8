// The manifest-to-spec converter's state, shared by its two halves: kubevirt.cpp (the document,
// CPU, memory, firmware) and kubevirt_devices.cpp (disks with their volumes, interfaces with their
// networks).
#pragma once

#include <cstdint>
#include <optional>
#include <qshim/spec.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spec/decoder.hpp"
#include "spec/kubevirt.hpp"
#include "spec/libvirt_domain.hpp"

namespace qshim::spec::detail::kubevirt {

// Why a field is refused: KubeVirt has it, qshim does not (docs/kubevirt.md lists them).
inline constexpr std::string_view unsupported = "not supported by qshim";

// Spec nodes made from manifest nodes: each takes the position of the node it came from.
Node text(std::string value, const Node& at);
Node number(uint64_t value, const Node& at);
Node boolean(bool value, const Node& at);
Node map(const Node& at);
Node sequence(const Node& at);
void put(Node& map, std::string key, Node value);

// A Kubernetes quantity ("2Gi", "512M", "1024") in bytes; nullopt when it is not a whole one.
std::optional<uint64_t> parse_quantity(std::string_view text);

class Converter {
  public:
    Converter(Diagnostics& diags, const VolumeRoots& roots, const Domain* pins,
              std::vector<std::string>* notes)
        : diags_(diags), roots_(roots), domain_(pins), notes_(notes) {}

    std::optional<Converted> run(const Node& root);

  private:
    // kubevirt.cpp
    void vm_spec(const Node& spec, const std::string& path);
    void vmi_spec(const Node& spec, const std::string& path);
    void domain(const Node& domain, const std::string& path);
    void cpu(const Node& cpu, const std::string& path);
    void memory(const Node* memory, const Node* resources, const std::string& path,
                const Node& domain);
    void firmware(const Node& firmware, const std::string& path);
    void features(const Node& features, const std::string& path);
    // A field that only a `false` (or `{}` for "disabled" maps) keeps: true is refused.
    void refuse_true(Fields& f, std::string_view key, std::string_view why);

    // kubevirt_devices.cpp
    void devices(const Node& devices, const std::string& path);
    void read_volumes(const Node& volumes, const std::string& path);
    void read_networks(const Node& networks, const std::string& path);
    void disk(const Node& disk, const std::string& path);
    bool volume_source(size_t volume, Node& out, bool cdrom);
    void cloud_init(const Node& source, const std::string& path, const std::string& disk_path);
    void interface(const Node& iface, const std::string& path);
    void filesystem(const Node& fs, const std::string& path);
    // Where the pod has a configMap, secret, downwardAPI or serviceAccount volume's files, or a
    // filesystem claim's folder.
    std::string folder_of_volume(std::string_view kind, const std::string& name) const;
    void note_absent_claim(const std::string& path, const std::string& name,
                           const std::string& file);
    void unused_volumes_and_networks();

    // kubevirt_pins.cpp: --pin-from
    void pin_from();
    // Puts `key` into the spec's `item` (at spec path `spec_path`, "disks[0]").
    void pin(Node& item, const char* key, Node value, const std::string& spec_path,
             const DomainDevice& from);
    const DomainDevice* domain_device(const std::string& element, const std::string& name,
                                      const std::string& mac);
    bool on_root_port(const DomainDevice& d, const Node& at, const std::string& path);

    bool expect(const Node& n, Node::Kind kind, const std::string& path) {
        return expect_kind(diags_, n, kind, path);
    }
    void origin(std::string spec_path, std::string manifest_path) {
        out_.origins.emplace_back(std::move(spec_path), std::move(manifest_path));
    }

    // A volume or network: what disks and interfaces name.
    struct Named {
        std::string name;
        const Node* node = nullptr;
        std::string path;  // "spec.volumes[3]"
        bool used = false;
    };
    static Named* find(std::vector<Named>& list, const std::string& name);

    Diagnostics& diags_;
    const VolumeRoots& roots_;
    const Domain* domain_;  // --pin-from, or nullptr
    // What the user should know and is not an error (what --pin-from could not keep, a disk
    // KubeVirt's defaults add); may be nullptr.
    std::vector<std::string>* notes_;
    // devices.pciAddresses keys with the domain device giving each its place
    std::vector<std::pair<std::string, const DomainDevice*>> builtin_pins_;
    std::string cloud_init_disk_;  // the disk that names the cloud-init volume
    Converted out_;
    const Node* root_ = nullptr;
    std::vector<Named> volumes_, networks_;
    Node disks_, interfaces_, filesystems_;
    bool iothreads_shared_ = false;
    unsigned dedicated_iothreads_ = 0;
    bool cloud_init_seen_ = false;
    bool rng_ = false;
    bool balloon_ = true;        // autoattachMemBalloon defaults to true
    bool pod_interface_ = true;  // autoattachPodInterface defaults to true
    const Node* devices_node_ = nullptr;
    Node no_devices_;  // stands in for a domain without devices
    Node no_cpu_;      // and one without cpu
    // resources' cpu (the limit, else the request) when it is whole: the vCPU count KubeVirt
    // gives a VM that sets no CPU topology.
    std::optional<uint64_t> resource_cpus_;
};

}  // namespace qshim::spec::detail::kubevirt
