// Disk and NIC JSON for QEMU, shared by the command line and hotplug so they can never differ.
#include "launcher/device_json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <qshim/launcher.hpp>

namespace qshim::launcher::detail {

namespace {

void pci_placement(Json& j, const topology::Device& d) {
    j["bus"] = d.parent;
    j["addr"] = fmt::format("0x{:x}", d.slot);
}

}  // namespace

std::string iothread_id(unsigned index) { return fmt::format("io{}", index); }

namespace {

// cache none: O_DIRECT, past the host's page cache (libvirt's and QEMU's meaning). The flushes
// the guest asks for always reach the disk: no mode here sets no-flush.
void host_cache(Json& file_node, const spec::Disk& disk) {
    if (disk.cache) file_node["cache"] = Json{{"direct", *disk.cache == spec::DiskCache::none}};
}

}  // namespace

std::array<Json, 2> disk_blockdevs(const spec::Disk& disk) {
    // The format is always explicit: letting QEMU probe lets a raw image pose as qcow2.
    std::array<Json, 2> nodes{Json{{"driver", "file"},
                                   {"filename", disk.path},
                                   {"node-name", file_node_name(disk.name)},
                                   {"read-only", disk.read_only},
                                   {"discard", "unmap"}},
                              Json{{"driver", spec::to_string(disk.format)},
                                   {"file", file_node_name(disk.name)},
                                   {"node-name", format_node_name(disk.name)},
                                   {"read-only", disk.read_only}}};
    host_cache(nodes[0], disk);
    return nodes;
}

Json medium_blockdev(const spec::Disk& disk, const std::string& node_name) {
    // One node with its file inline: blockdev-del of this node removes both.
    return Json{{"driver", spec::to_string(disk.format)},
                {"node-name", node_name},
                {"read-only", true},
                {"file", Json{{"driver", "file"}, {"filename", disk.path}, {"read-only", true}}}};
}

std::array<Json, 4> ephemeral_blockdevs(const spec::Disk& disk, const std::string& overlay) {
    const std::string image = image_node_name(disk.name),
                      overlay_file = overlay_node_name(disk.name);
    // The image takes the disk's cache mode; the overlay, thrown away at the end, QEMU's default.
    Json image_file{{"driver", "file"},
                    {"filename", disk.path},
                    {"node-name", file_node_name(disk.name)},
                    {"read-only", true}};
    host_cache(image_file, disk);
    return {image_file,
            Json{{"driver", spec::to_string(disk.format)},
                 {"file", file_node_name(disk.name)},
                 {"node-name", image},
                 {"read-only", true}},
            Json{{"driver", "file"},
                 {"filename", overlay},
                 {"node-name", overlay_file},
                 {"discard", "unmap"}},
            Json{{"driver", "qcow2"},
                 {"file", overlay_file},
                 {"backing", image},
                 {"node-name", format_node_name(disk.name)},
                 {"read-only", disk.read_only}}};
}

std::string vhost_user_chardev(std::string_view disk_name) {
    return fmt::format("vu.{}", disk_name);
}

std::string virtiofs_chardev(std::string_view filesystem_name) {
    return fmt::format("vfs.{}", filesystem_name);
}

bool shares_memory(const spec::VmSpec& spec) {
    if (spec.memory.shared) return true;
    for (const auto& d : spec.disks)
        if (d.vhost_user()) return true;
    return !spec.filesystems.empty();
}

unsigned vhost_user_queues(const spec::VmSpec& spec) {
    return std::min(spec.cpu.count(), max_vhost_user_queues);
}

Json disk_device(const topology::Device& d, const spec::Disk& disk) {
    if (disk.vhost_user()) {
        // The server holds the image: no drive, and the serial is its to answer.
        Json j{{"driver", d.driver}, {"id", d.id}, {"chardev", vhost_user_chardev(disk.name)}};
        pci_placement(j, d);
        if (disk.boot_order) j["bootindex"] = *disk.boot_order;
        return j;
    }
    Json j{{"driver", d.driver}, {"id", d.id}};
    if (!disk.no_medium()) j["drive"] = format_node_name(disk.name);
    switch (disk.bus) {
        case spec::DiskBus::virtio:
            pci_placement(j, d);
            if (disk.iothread) j["iothread"] = iothread_id(*disk.iothread);
            break;
        case spec::DiskBus::scsi:
            j["bus"] = d.parent;
            j["channel"] = 0;
            j["scsi-id"] = 0;
            j["lun"] = *d.unit;
            break;
        case spec::DiskBus::sata:
            j["bus"] = d.parent;
            break;
    }
    j["serial"] = disk.serial;
    if (disk.boot_order) j["bootindex"] = *disk.boot_order;
    // writethrough: the guest sees no volatile write cache, so every write is stable when done.
    if (disk.cache) j["write-cache"] = *disk.cache == spec::DiskCache::writethrough ? "off" : "on";
    return j;
}

Json netdev(const spec::Interface& nic, std::optional<int> fd, const std::string& passt_socket) {
    Json backend{{"id", netdev_id(nic.name)}};
    switch (nic.backend.type) {
        case spec::BackendType::user:
            backend["type"] = "user";
            if (!nic.backend.port_forwards.empty()) {
                Json forwards = Json::array();
                // QEMU 7.2 takes hostfwd only as its own string syntax, in a JSON list.
                for (const auto& f : nic.backend.port_forwards)
                    forwards.push_back(
                        Json{{"str", fmt::format("{}:{}:{}-:{}", spec::to_string(f.protocol),
                                                 f.host_address, f.host_port, f.guest_port)}});
                backend["hostfwd"] = forwards;
            }
            if (nic.backend.restricted) backend["restrict"] = true;
            break;
        case spec::BackendType::tap:
            backend["type"] = "tap";
            if (nic.backend.tap_fd) {
                backend["fd"] = std::to_string(fd.value_or(*nic.backend.tap_fd));
            } else {
                backend["ifname"] = nic.backend.tap_name;
                // Never run the host scripts: qshim does not configure host networking.
                backend["script"] = "no";
                backend["downscript"] = "no";
            }
            break;
        case spec::BackendType::stream:
            backend["type"] = "stream";
            backend["addr"] = Json{{"type", "unix"}, {"path", nic.backend.socket}};
            break;
        case spec::BackendType::passt:
            // The passt qshim runs for this NIC listens there (launcher/helper_plan.cpp).
            backend["type"] = "stream";
            backend["addr"] = Json{{"type", "unix"}, {"path", passt_socket}};
            break;
    }
    return backend;
}

Json nic_device(const topology::Device& d, const spec::Interface& nic) {
    Json j{{"driver", d.driver}, {"id", d.id}, {"netdev", netdev_id(nic.name)}, {"mac", d.mac}};
    pci_placement(j, d);
    if (nic.boot_order)
        j["bootindex"] = *nic.boot_order;
    else if (d.driver != "e1000")
        j["romfile"] = "";  // no PXE ROM unless the NIC boots
    return j;
}

}  // namespace qshim::launcher::detail
