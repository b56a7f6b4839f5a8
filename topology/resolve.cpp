// resolve(): the spec with every placement written into it, and diff() between topologies.
#include <fmt/format.h>

#include <map>
#include <qshim/topology.hpp>

namespace qshim::topology {

spec::VmSpec resolve(const spec::VmSpec& spec, const Topology& topology) {
    spec::VmSpec out = spec;
    for (const auto& d : topology.devices) {
        if (d.spec_index < 0) {
            // Built-in devices have places of their own only in the libvirt layout.
            if (spec.machine.layout != spec::PciLayout::libvirt) continue;
            auto& pins = out.devices.pci_addresses;
            if (d.name == "scsi") pins.scsi = d.address;
            if (d.name == "virtio-serial") pins.virtio_serial = d.address;
            if (d.name == "rng") pins.rng = d.address;
            if (d.name == "balloon") pins.balloon = d.address;
            if (d.name == "cloud-init") pins.cloud_init = d.address;
            continue;
        }
        auto i = static_cast<size_t>(d.spec_index);
        switch (d.kind) {
            case DeviceKind::disk:
                // Virtio disks own a PCI function, scsi disks a LUN, sata disks an AHCI port.
                if (out.disks[i].bus == spec::DiskBus::virtio) out.disks[i].pci_address = d.address;
                if (out.disks[i].bus == spec::DiskBus::scsi) out.disks[i].lun = d.unit;
                if (out.disks[i].bus == spec::DiskBus::sata) out.disks[i].sata_port = d.unit;
                break;
            case DeviceKind::interface:
                out.interfaces[i].pci_address = d.address;
                out.interfaces[i].mac_explicit = true;
                break;
            case DeviceKind::hostdev:
                out.host_devices[i].pci_address = d.address;
                break;
            default:
                break;
        }
    }
    return out;
}

namespace {

std::string subject(const Device& d) { return fmt::format("{} {}", to_string(d.kind), d.name); }

std::string where(const Device& d) {
    std::string s = spec::to_string(d.address);
    if (d.unit) s += fmt::format(" unit {}", *d.unit);
    return s;
}

}  // namespace

std::vector<Change> diff(const Topology& before, const Topology& after) {
    std::vector<Change> changes;
    using T = Change::Type;
    if (before.machine != after.machine)
        changes.push_back({T::changed, "machine", before.machine + " -> " + after.machine});
    if (before.version != after.version)
        changes.push_back({T::changed, "topologyVersion",
                           fmt::format("{} -> {}", before.version, after.version)});

    std::map<std::pair<DeviceKind, std::string>, const Device*> old_devices;
    for (const auto& d : before.devices) old_devices[{d.kind, d.name}] = &d;
    for (const auto& d : after.devices) {
        auto it = old_devices.find({d.kind, d.name});
        if (it == old_devices.end()) {
            changes.push_back({T::added, subject(d), "at " + where(d)});
            continue;
        }
        const Device& o = *it->second;
        if (where(o) != where(d))
            changes.push_back({T::moved, subject(d), where(o) + " -> " + where(d)});
        if (o.driver != d.driver)
            changes.push_back({T::changed, subject(d), "model " + o.driver + " -> " + d.driver});
        if (o.serial != d.serial)
            changes.push_back({T::changed, subject(d), "serial " + o.serial + " -> " + d.serial});
        if (o.mac != d.mac)
            changes.push_back({T::changed, subject(d), "MAC " + o.mac + " -> " + d.mac});
        old_devices.erase(it);
    }
    for (const auto& d : before.devices)
        if (old_devices.count({d.kind, d.name}))
            changes.push_back({T::removed, subject(d), "was at " + where(d)});

    // Root ports and the bridge are guest-visible functions too.
    std::map<std::string, const Controller*> old_controllers;
    for (const auto& c : before.controllers) old_controllers[c.id] = &c;
    for (const auto& c : after.controllers) {
        auto it = old_controllers.find(c.id);
        if (it == old_controllers.end()) continue;  // a new empty port is an addition, not a change
        const Controller& o = *it->second;
        if (o.address != c.address || o.bus != c.bus)
            changes.push_back({T::moved, "controller " + c.id,
                               fmt::format("{} bus {} -> {} bus {}", spec::to_string(o.address),
                                           o.bus, spec::to_string(c.address), c.bus)});
    }
    return changes;
}

std::string to_string(const Change& c) {
    const char* type = "changed";
    switch (c.type) {
        case Change::Type::added:
            type = "added";
            break;
        case Change::Type::removed:
            type = "removed";
            break;
        case Change::Type::moved:
            type = "moved";
            break;
        case Change::Type::changed:
            type = "changed";
            break;
    }
    return fmt::format("{}: {}: {}", type, c.subject, c.detail);
}

}  // namespace qshim::topology
