// plan(): places every device of a spec into the v1 layout (topology/layout.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <qshim/topology.hpp>

#include "topology/layout.hpp"

namespace qshim::topology {

using namespace detail;
using spec::VmSpec;

namespace {

// One thing asking for a place: its path in the spec (for messages) and an optional pin.
struct Request {
    int spec_index;
    std::string label;  // e.g. "disks[2] (data)"
    std::string path;   // e.g. "disks[2].pciAddress"
    std::optional<PciAddress> pin;
};

class Planner {
  public:
    explicit Planner(const VmSpec& spec) : spec_(spec) {}

    Result<Topology> run() {
        topo_.version = 1;
        topo_.machine = spec_.machine.type == "q35" ? std::string(v1_machine) : spec_.machine.type;

        auto disk_positions = place_region(disks_region, virtio_disk_requests(), "virtio disks");
        auto nic_positions =
            place_region(interfaces_region, nic_requests(false), "virtio/e1000e interfaces");
        auto hostdev_positions =
            place_region(host_devices_region, host_device_requests(), "host devices");
        auto legacy_slots = place_bridge_slots(nic_requests(true));
        if (!problems_.empty()) return failure();

        unsigned disk_ports =
            region_size(disks_region, disk_positions, spec_.hotplug.disks, "hotplug.disks", 1);
        unsigned nic_ports = region_size(interfaces_region, nic_positions, spec_.hotplug.interfaces,
                                         "hotplug.interfaces", 0);
        unsigned hostdev_ports = region_size(host_devices_region, hostdev_positions, 0, "", 0);
        unsigned controller_ports = controllers_needed();
        unsigned legacy_ports = legacy_slots.empty() ? 0 : 1;
        unsigned filesystem_ports = static_cast<unsigned>(spec_.filesystems.size());
        if (filesystem_ports > filesystems_region.ports())
            problem("filesystems", fmt::format("{} filesystems do not fit: the layout holds {}",
                                               filesystem_ports, filesystems_region.ports()));
        if (!problems_.empty()) return failure();

        add_ports(disks_region, disk_ports, true);
        add_ports(interfaces_region, nic_ports, true);
        add_ports(controllers_region, controller_ports, false);
        add_ports(host_devices_region, hostdev_ports, false);
        add_ports(legacy_region, legacy_ports, false);
        add_ports(filesystems_region, filesystem_ports, false);
        pad_bus_numbers();
        if (legacy_ports) add_bridge();

        add_disks(disk_positions);
        add_nics(nic_positions, legacy_slots);
        add_host_devices(hostdev_positions);
        add_filesystems();
        add_builtins();
        add_hotplug_ports(disks_region, disk_positions, disk_ports);
        add_hotplug_ports(interfaces_region, nic_positions, nic_ports);
        if (!problems_.empty()) return failure();
        // Output order is by class, then spec order, whatever the pins.
        std::stable_sort(
            topo_.devices.begin(), topo_.devices.end(), [](const Device& a, const Device& b) {
                return a.kind != b.kind ? a.kind < b.kind : a.spec_index < b.spec_index;
            });
        return std::move(topo_);
    }

  private:
    using Positions = std::vector<std::optional<int>>;  // position -> spec index

    void problem(std::string path, std::string reason) {
        problems_.push_back({spec_.source_file, 0, 0, std::move(path), std::move(reason)});
    }

    Error failure() {
        Error e = make_error(Errc::topology,
                             fmt::format("the spec cannot be laid out ({} problem{})",
                                         problems_.size(), problems_.size() == 1 ? "" : "s"),
                             "planning the topology of " + spec_.name);
        e.diagnostics = std::move(problems_);
        return e;
    }

    std::vector<Request> virtio_disk_requests() const {
        std::vector<Request> out;
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const auto& d = spec_.disks[i];
            if (d.bus == spec::DiskBus::virtio)
                out.push_back({static_cast<int>(i), fmt::format("disks[{}] ({})", i, d.name),
                               fmt::format("disks[{}].pciAddress", i), d.pci_address});
        }
        return out;
    }

    std::vector<Request> nic_requests(bool legacy) const {
        std::vector<Request> out;
        for (size_t i = 0; i < spec_.interfaces.size(); ++i) {
            const auto& n = spec_.interfaces[i];
            if ((n.model == spec::NicModel::e1000) == legacy)
                out.push_back({static_cast<int>(i), fmt::format("interfaces[{}] ({})", i, n.name),
                               fmt::format("interfaces[{}].pciAddress", i), n.pci_address});
        }
        return out;
    }

    std::vector<Request> host_device_requests() const {
        std::vector<Request> out;
        for (size_t i = 0; i < spec_.host_devices.size(); ++i) {
            const auto& h = spec_.host_devices[i];
            out.push_back({static_cast<int>(i), fmt::format("hostDevices[{}] ({})", i, h.name),
                           fmt::format("hostDevices[{}].pciAddress", i), h.pci_address});
        }
        return out;
    }

    // Pinned requests first, then the rest in list order into the lowest free positions, so
    // appending to a list never moves what is already placed.
    Positions place(const std::vector<Request>& requests, unsigned capacity,
                    const std::function<std::optional<unsigned>(const PciAddress&)>& position_of,
                    const std::string& allowed, const std::string& what) {
        Positions positions(capacity);
        std::vector<std::string> owner(capacity);
        for (const auto& r : requests) {
            if (!r.pin) continue;
            auto p = position_of(*r.pin);
            if (!p) {
                problem(r.path, fmt::format("{} is not a place for {}: they live at {}",
                                            spec::to_string(*r.pin), what, allowed));
            } else if (positions[*p]) {
                problem(r.path, fmt::format("{} is already pinned by {}", spec::to_string(*r.pin),
                                            owner[*p]));
            } else {
                positions[*p] = r.spec_index;
                owner[*p] = r.label;
            }
        }
        size_t next = 0, left_out = 0;
        for (const auto& r : requests) {
            if (r.pin) continue;
            while (next < capacity && positions[next]) ++next;
            if (next < capacity)
                positions[next++] = r.spec_index;
            else
                ++left_out;
        }
        if (left_out)
            problem(what, fmt::format("{} {} do not fit: the layout holds {}", requests.size(),
                                      what, capacity));
        return positions;
    }

    Positions place_region(const Region& region, const std::vector<Request>& requests,
                           const std::string& what) {
        auto position_of = [&region](const PciAddress& a) -> std::optional<unsigned> {
            if (a.domain != 0 || a.slot != 0 || a.function != 0) return std::nullopt;
            if (a.bus < region.first_bus || a.bus >= region.first_bus + region.ports())
                return std::nullopt;
            return a.bus - region.first_bus;
        };
        std::string allowed = fmt::format(
            "{} to {}", spec::to_string(PciAddress{0, uint8_t(region.first_bus), 0, 0}),
            spec::to_string(PciAddress{0, uint8_t(region.first_bus + region.ports() - 1), 0, 0}));
        return place(requests, region.ports(), position_of, allowed, what);
    }

    Positions place_bridge_slots(const std::vector<Request>& requests) {
        if (requests.empty()) return {};
        const unsigned count = bridge_last_slot - bridge_first_slot + 1;
        auto position_of = [](const PciAddress& a) -> std::optional<unsigned> {
            if (a.domain != 0 || a.bus != legacy_bridge_bus || a.function != 0) return std::nullopt;
            if (a.slot < bridge_first_slot || a.slot > bridge_last_slot) return std::nullopt;
            return a.slot - bridge_first_slot;
        };
        std::string allowed =
            fmt::format("{} to {}",
                        spec::to_string(PciAddress{0, uint8_t(legacy_bridge_bus),
                                                   uint8_t(bridge_first_slot), 0}),
                        spec::to_string(PciAddress{0, uint8_t(legacy_bridge_bus),
                                                   uint8_t(bridge_last_slot), 0}));
        return place(requests, count, position_of, allowed, "e1000 interfaces");
    }

    // Ports a region materializes: every position up to the highest used one, plus enough empty
    // ones to leave `spares` free. Positions are contiguous from 0 so that function 0 of every
    // slot exists (the guest scans a slot only through function 0).
    unsigned region_size(const Region& region, const Positions& positions, unsigned spares,
                         const std::string& spare_field, unsigned minimum) {
        unsigned used = 0, highest = 0;
        for (unsigned p = 0; p < positions.size(); ++p)
            if (positions[p]) {
                ++used;
                highest = p + 1;
            }
        unsigned size = std::max({highest, used + spares, minimum});
        if (size > region.ports())
            problem(
                spare_field.empty() ? std::string(region.name) : spare_field,
                fmt::format("{} in use and {} spare need {} root ports, but the {} region holds {}",
                            used, spares, used + spares, region.name, region.ports()));
        return std::min(size, region.ports());
    }

    // The virtio-scsi controller: for the spec's scsi disks, or kept for hot-plugged ones.
    bool has_scsi() const {
        return spec_.hotplug.scsi ||
               std::any_of(spec_.disks.begin(), spec_.disks.end(),
                           [](auto& d) { return d.bus == spec::DiskBus::scsi; });
    }

    // Each scsi disk's LUN: its own `lun`, or else the lowest one still free, in list order. A
    // spec without `lun` gets 0, 1, 2, ... in list order, as topology v1 always did; a disk
    // removed from the middle keeps the others' LUNs once they are written down (resolve()).
    std::vector<unsigned> scsi_luns() {
        std::vector<unsigned> lun(spec_.disks.size(), 0);
        std::vector<bool> taken(scsi_max_luns, false);
        for (const auto& d : spec_.disks)
            if (d.bus == spec::DiskBus::scsi && d.lun && *d.lun < scsi_max_luns)
                taken[*d.lun] = true;
        unsigned next = 0, count = 0;
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const auto& d = spec_.disks[i];
            if (d.bus != spec::DiskBus::scsi) continue;
            ++count;
            if (d.lun) {
                lun[i] = *d.lun;
                continue;
            }
            while (next < scsi_max_luns && taken[next]) ++next;
            if (next == scsi_max_luns) break;  // reported below, by count
            taken[next] = true;
            lun[i] = next;
        }
        if (count > scsi_max_luns)
            problem("disks",
                    fmt::format("{} scsi disks; the layout holds {}", count, scsi_max_luns));
        return lun;
    }

    unsigned controllers_needed() const {
        unsigned size = 0;
        auto need = [&size](bool present, unsigned position) {
            if (present) size = std::max(size, position + 1);
        };
        need(spec_.devices.rng, rng_position);
        need(has_scsi(), scsi_position);
        need(spec_.devices.balloon, balloon_position);
        need(!spec_.devices.guest_agent.empty(), virtio_serial_position);
        need(spec_.cloud_init.has_value(), cloud_init_position);
        return size;
    }

    static std::string port_id(const Region& region, unsigned position) {
        return fmt::format("rp.{}.{}", region.name, position);
    }

    void add_ports(const Region& region, unsigned count, bool hotplug) {
        for (unsigned p = 0; p < count; ++p) {
            Controller c;
            c.id = port_id(region, p);
            c.model = "pcie-root-port";
            c.region = region.name;
            c.address = {0, 0, uint8_t(region.first_slot + p / 8), uint8_t(p % 8)};
            c.parent = "pcie.0";
            c.bus = region.first_bus + p;
            // Chassis/port numbers must be unique per port; the bus number is, and is stable.
            c.chassis = c.bus;
            c.port = c.bus;
            c.hotplug = hotplug;
            // Always on for function 0: turning it on later, when function 1 appears, would
            // change the header type of a port the guest already knows.
            c.multifunction = p % 8 == 0;
            // The 64 KiB I/O space holds only ~14 bridge windows; PCIe devices need none.
            c.io_reserve_zero = &region != &legacy_region;
            topo_.controllers.push_back(std::move(c));
        }
    }

    // The last port of each region reserves the bus numbers up to the next port, so every port
    // keeps region.first_bus + position whatever the other regions hold. SeaBIOS writes a
    // bus-reserve that is not above the buses already used below the port as the subordinate
    // bus number verbatim, breaking the numbering, so it is set only where it pads.
    void pad_bus_numbers() {
        auto& ports = topo_.controllers;
        for (size_t i = 0; i + 1 < ports.size(); ++i) {
            unsigned below = ports[i].region == legacy_region.name ? 1 : 0;
            unsigned gap = ports[i + 1].bus - ports[i].bus - 1;
            if (gap > below) ports[i].bus_reserve = gap;
        }
    }

    void add_bridge() {
        Controller b;
        b.id = "bridge.legacy";
        b.model = "pcie-pci-bridge";
        b.region = legacy_region.name;
        b.address = {0, uint8_t(legacy_region.first_bus), 0, 0};
        b.parent = port_id(legacy_region, 0);
        b.bus = legacy_bridge_bus;
        topo_.controllers.push_back(std::move(b));
    }

    void add_disks(const Positions& positions) {
        std::vector<std::optional<unsigned>> position_of(spec_.disks.size());
        for (unsigned p = 0; p < positions.size(); ++p)
            if (positions[p]) position_of[static_cast<size_t>(*positions[p])] = p;
        const std::vector<unsigned> luns = scsi_luns();
        unsigned sata_port = 0;
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const auto& d = spec_.disks[i];
            Device dev;
            dev.name = d.name;
            dev.kind = DeviceKind::disk;
            dev.id = d.name;
            dev.serial = d.serial;
            dev.spec_index = static_cast<int>(i);
            bool cdrom = d.device == spec::DiskDevice::cdrom;
            switch (d.bus) {
                case spec::DiskBus::virtio:
                    // The same disks port whoever serves the blocks: a vhost-user-blk disk
                    // is placed exactly as a virtio-blk one would be (docs/topology.md).
                    dev.driver = d.vhost_user() ? "vhost-user-blk-pci" : "virtio-blk-pci";
                    dev.parent = port_id(disks_region, *position_of[i]);
                    dev.address = {0, uint8_t(disks_region.first_bus + *position_of[i]), 0, 0};
                    break;
                case spec::DiskBus::scsi:
                    dev.driver = cdrom ? "scsi-cd" : "scsi-hd";
                    dev.parent = "scsi.0.0";
                    dev.unit = luns[i];
                    dev.address = {0, uint8_t(controllers_region.first_bus + scsi_position), 0, 0};
                    break;
                case spec::DiskBus::sata:
                    dev.driver = cdrom ? "ide-cd" : "ide-hd";
                    dev.unit = sata_port;
                    dev.parent = fmt::format("ide.{}", sata_port++);
                    dev.address = {0, 0, 0x1f, 2};
                    break;
            }
            topo_.devices.push_back(std::move(dev));
        }
        if (sata_port > sata_ports)
            problem("disks", fmt::format("{} sata disks; q35's AHCI controller has {} ports",
                                         sata_port, sata_ports));
    }

    void add_nics(const Positions& positions, const Positions& bridge_slots) {
        std::vector<std::optional<PciAddress>> address(spec_.interfaces.size());
        std::vector<std::string> parent(spec_.interfaces.size());
        std::vector<unsigned> slot(spec_.interfaces.size(), 0);
        for (unsigned p = 0; p < positions.size(); ++p)
            if (positions[p]) {
                auto i = static_cast<size_t>(*positions[p]);
                address[i] = PciAddress{0, uint8_t(interfaces_region.first_bus + p), 0, 0};
                parent[i] = port_id(interfaces_region, p);
            }
        for (unsigned p = 0; p < bridge_slots.size(); ++p)
            if (bridge_slots[p]) {
                auto i = static_cast<size_t>(*bridge_slots[p]);
                slot[i] = bridge_first_slot + p;
                address[i] = PciAddress{0, uint8_t(legacy_bridge_bus), uint8_t(slot[i]), 0};
                parent[i] = "bridge.legacy";
            }
        for (size_t i = 0; i < spec_.interfaces.size(); ++i) {
            const auto& n = spec_.interfaces[i];
            Device dev;
            dev.name = n.name;
            dev.kind = DeviceKind::interface;
            dev.id = n.name;
            dev.driver = n.model == spec::NicModel::virtio   ? "virtio-net-pci"
                         : n.model == spec::NicModel::e1000e ? "e1000e"
                                                             : "e1000";
            dev.address = *address[i];
            dev.parent = parent[i];
            dev.slot = slot[i];
            dev.mac = spec::to_string(n.mac);
            dev.spec_index = static_cast<int>(i);
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_host_devices(const Positions& positions) {
        for (unsigned p = 0; p < positions.size(); ++p) {
            if (!positions[p]) continue;
            auto i = static_cast<size_t>(*positions[p]);
            Device dev;
            dev.name = spec_.host_devices[i].name;
            dev.kind = DeviceKind::hostdev;
            dev.id = dev.name;
            dev.driver = "vfio-pci";
            dev.address = {0, uint8_t(host_devices_region.first_bus + p), 0, 0};
            dev.parent = port_id(host_devices_region, p);
            dev.spec_index = static_cast<int>(i);
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_filesystems() {
        for (unsigned p = 0; p < spec_.filesystems.size(); ++p) {
            Device dev;
            dev.name = spec_.filesystems[p].name;
            dev.kind = DeviceKind::filesystem;
            dev.id = dev.name;
            dev.driver = "vhost-user-fs-pci";
            dev.address = {0, uint8_t(filesystems_region.first_bus + p), 0, 0};
            dev.parent = port_id(filesystems_region, p);
            dev.spec_index = static_cast<int>(p);
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_builtin(bool present, unsigned position, std::string name, DeviceKind kind,
                     std::string driver, std::string id, std::string serial = {}) {
        if (!present) return;
        Device dev;
        dev.serial = std::move(serial);
        dev.name = std::move(name);
        dev.kind = kind;
        dev.driver = std::move(driver);
        dev.id = std::move(id);
        dev.address = {0, uint8_t(controllers_region.first_bus + position), 0, 0};
        dev.parent = port_id(controllers_region, position);
        topo_.devices.push_back(std::move(dev));
    }

    void add_builtins() {
        add_builtin(has_scsi(), scsi_position, "scsi", DeviceKind::controller, "virtio-scsi-pci",
                    "scsi.0");
        add_builtin(!spec_.devices.guest_agent.empty(), virtio_serial_position, "virtio-serial",
                    DeviceKind::controller, "virtio-serial-pci", "vserial.0");
        add_builtin(spec_.devices.rng, rng_position, "rng", DeviceKind::system, "virtio-rng-pci",
                    "rng.0");
        add_builtin(spec_.devices.balloon, balloon_position, "balloon", DeviceKind::system,
                    "virtio-balloon-pci", "balloon.0");
        add_builtin(spec_.cloud_init.has_value(), cloud_init_position, "cloud-init",
                    DeviceKind::system, "virtio-blk-pci", "cloudinit.0",
                    std::string(cloud_init_serial));
    }

    void add_hotplug_ports(const Region& region, const Positions& positions, unsigned count) {
        for (unsigned p = 0; p < count; ++p) {
            if (p < positions.size() && positions[p]) continue;
            topo_.hotplug_ports.push_back(
                {std::string(region.name), port_id(region, p),
                 PciAddress{0, uint8_t(region.first_bus + p), 0, 0},
                 PciAddress{0, 0, uint8_t(region.first_slot + p / 8), uint8_t(p % 8)}});
        }
    }

    const VmSpec& spec_;
    Topology topo_;
    std::vector<Diagnostic> problems_;
};

}  // namespace

const char* to_string(DeviceKind kind) {
    switch (kind) {
        case DeviceKind::disk:
            return "disk";
        case DeviceKind::interface:
            return "interface";
        case DeviceKind::controller:
            return "controller";
        case DeviceKind::hostdev:
            return "hostdev";
        case DeviceKind::system:
            return "system";
        case DeviceKind::filesystem:
            return "filesystem";
    }
    return "?";
}

const Device* Topology::find_device(std::string_view name, DeviceKind kind) const {
    for (const auto& d : devices)
        if (d.kind == kind && d.name == name) return &d;
    return nullptr;
}

Result<Topology> plan(const VmSpec& spec) {
    if (spec.machine.topology_version != 1)
        return make_error(Errc::unsupported,
                          fmt::format("topology version {} is unknown (this qshim knows 1)",
                                      spec.machine.topology_version),
                          "planning the topology of " + spec.name);
    return Planner(spec).run();
}

}  // namespace qshim::topology
