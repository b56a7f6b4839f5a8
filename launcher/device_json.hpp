// The JSON QEMU is given for a disk or NIC: the same on the command line and in hotplug.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>

namespace qshim::launcher::detail {

using Json = nlohmann::ordered_json;

// The QOM id of IOThread `index` (iothreads: N creates io0 .. io{N-1}).
std::string iothread_id(unsigned index);

// The file node, then the format node on top of it (-blockdev / blockdev-add arguments).
std::array<Json, 2> disk_blockdevs(const spec::Disk& disk);
// A disc inserted into a running VM's cdrom drive: one read-only node named `node_name`, its file
// node inline (QEMU names it; blockdev-del of the top node removes both).
Json medium_blockdev(const spec::Disk& disk, const std::string& node_name);
// An ephemeral disk's nodes: its image read-only (file, format), then the overlay on top
// (file, qcow2 with the image's format node as its backing). The top node has the name
// disk_blockdevs gives the format node, so the device is the same.
std::array<Json, 4> ephemeral_blockdevs(const spec::Disk& disk, const std::string& overlay);
// The chardev a vhost-user disk's device connects through: "vu.<disk>" (a disk name has no '.',
// so it never meets another chardev id).
std::string vhost_user_chardev(std::string_view disk_name);
// The chardev of a filesystem's vhost-user-fs-pci: "vfs.<name>".
std::string virtiofs_chardev(std::string_view filesystem_name);
// Whether guest RAM must be shareable (memfd, share=on): a vhost-user server (a vhost-user disk's,
// a filesystem's virtiofsd) maps it.
bool shares_memory(const spec::VmSpec& spec);
// The queues of a storageDaemon disk, on both sides of its socket: one per vCPU, as QEMU's
// own virtio-blk-pci has by default, up to this many.
constexpr unsigned max_vhost_user_queues = 8;
unsigned vhost_user_queues(const spec::VmSpec& spec);
// -device / device_add arguments for a disk placed at `d`.
Json disk_device(const topology::Device& d, const spec::Disk& disk);
// -netdev / netdev_add arguments. `fd`: the number QEMU knows an inherited tap fd by (the
// spec's fd is qshim's number for it; build_command maps one to the other). `passt_socket`:
// where the passt of a passt backend listens.
Json netdev(const spec::Interface& nic, std::optional<int> fd = std::nullopt,
            const std::string& passt_socket = {});
Json nic_device(const topology::Device& d, const spec::Interface& nic);

}  // namespace qshim::launcher::detail
