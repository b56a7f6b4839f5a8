// plan(): places every device of a spec into the v1 layout (topology/layout.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <array>
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
        disk_places_.resize(spec_.disks.size());
        nic_places_.resize(spec_.interfaces.size());
        hostdev_places_.resize(spec_.host_devices.size());
        filesystem_places_.resize(spec_.filesystems.size());
        if (spec_.machine.layout == spec::PciLayout::libvirt)
            lay_out_libvirt();
        else
            lay_out_regions();
        if (!problems_.empty()) return failure();

        add_disks();
        add_nics();
        add_host_devices();
        add_filesystems();
        add_builtins();
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

    // Where one device goes: its address, the QEMU bus it plugs into, its slot there.
    struct Place {
        PciAddress address;
        std::string parent;
        unsigned slot = 0;
    };
    using Places = std::vector<std::optional<Place>>;  // spec index -> place
    // The built-in devices, by their position in the controllers region.
    static constexpr unsigned builtin_count = cloud_init_position + 1;

    // Layout v1 in regions (topology/layout.hpp): each class in its own run of ports and buses.
    void lay_out_regions() {
        if (spec_.devices.pci_addresses.any())
            problem("devices.pciAddresses",
                    "the regions layout puts built-in devices at fixed places; pinning them "
                    "needs machine.layout: libvirt");
        auto disk_positions = place_region(disks_region, virtio_disk_requests(), "virtio disks");
        auto nic_positions =
            place_region(interfaces_region, nic_requests(false), "virtio/e1000e interfaces");
        auto hostdev_positions =
            place_region(host_devices_region, host_device_requests(), "host devices");
        auto legacy_slots = place_bridge_slots(nic_requests(true));
        if (!problems_.empty()) return;

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
        if (!problems_.empty()) return;

        add_ports(disks_region, disk_ports, true);
        add_ports(interfaces_region, nic_ports, true);
        add_ports(controllers_region, controller_ports, false);
        add_ports(host_devices_region, hostdev_ports, false);
        add_ports(legacy_region, legacy_ports, false);
        add_ports(filesystems_region, filesystem_ports, false);
        pad_bus_numbers();
        if (legacy_ports) add_bridge();

        in_region(disks_region, disk_positions, disk_places_);
        in_region(interfaces_region, nic_positions, nic_places_);
        in_region(host_devices_region, hostdev_positions, hostdev_places_);
        for (unsigned p = 0; p < legacy_slots.size(); ++p)
            if (legacy_slots[p]) {
                unsigned slot = bridge_first_slot + p;
                nic_places_[static_cast<size_t>(*legacy_slots[p])] =
                    Place{PciAddress{0, uint8_t(legacy_bridge_bus), uint8_t(slot), 0},
                          "bridge.legacy", slot};
            }
        for (unsigned p = 0; p < spec_.filesystems.size(); ++p)
            filesystem_places_[p] = region_place(filesystems_region, p);
        for (unsigned p = 0; p < builtin_count; ++p)
            builtin_places_[p] = region_place(controllers_region, p);
        add_hotplug_ports(disks_region, disk_positions, disk_ports);
        add_hotplug_ports(interfaces_region, nic_positions, nic_ports);
    }

    static Place region_place(const Region& region, unsigned position) {
        return Place{PciAddress{0, uint8_t(region.first_bus + position), 0, 0},
                     port_id(region, position)};
    }

    static void in_region(const Region& region, const Positions& positions, Places& places) {
        for (unsigned p = 0; p < positions.size(); ++p)
            if (positions[p]) places[static_cast<size_t>(*positions[p])] = region_place(region, p);
    }

    // libvirt's q35 numbering: one pcie-root-port per device from 00:01.0 on, eight to a slot,
    // the port with index i at bus i, chassis i, port 0x8 * slot + function (what libvirt
    // writes), so that a VM that ran under libvirt keeps the addresses its domain XML pins.
    void lay_out_libvirt() {
        struct Wanted {
            Places* places;   // nullptr for a built-in
            size_t index;     // in its list, or its builtin position
            std::string tag;  // the class the port serves
        };
        std::vector<Request> requests;
        std::vector<Wanted> wanted;
        auto want = [&](std::string label, std::string path, std::optional<PciAddress> pin,
                        Places* places, size_t index, std::string tag) {
            requests.push_back(
                {static_cast<int>(requests.size()), std::move(label), std::move(path), pin});
            wanted.push_back({places, index, std::move(tag)});
        };
        for (const auto& r : virtio_disk_requests())
            want(r.label, r.path, r.pin, &disk_places_, size_t(r.spec_index), "disks");
        for (const auto& r : nic_requests(false))
            want(r.label, r.path, r.pin, &nic_places_, size_t(r.spec_index), "interfaces");
        for (const auto& r : nic_requests(true))
            problem(fmt::format("interfaces[{}].model", r.spec_index),
                    "e1000 is conventional PCI, behind a bridge the libvirt layout does not "
                    "have; use e1000e");
        for (const auto& r : host_device_requests())
            want(r.label, r.path, r.pin, &hostdev_places_, size_t(r.spec_index), "hostDevices");
        for (size_t i = 0; i < spec_.filesystems.size(); ++i)
            want(fmt::format("filesystems[{}] ({})", i, spec_.filesystems[i].name), "", {},
                 &filesystem_places_, i, "filesystems");
        const auto& pins = spec_.devices.pci_addresses;
        auto builtin = [&](bool present, unsigned position, const char* key,
                           const std::optional<PciAddress>& pin) {
            if (present)
                want(fmt::format("the {} device", key), fmt::format("devices.pciAddresses.{}", key),
                     pin, nullptr, position, "controllers");
            else if (pin)
                problem(fmt::format("devices.pciAddresses.{}", key),
                        "pins a device the VM does not have");
        };
        builtin(has_scsi(), scsi_position, "scsi", pins.scsi);
        builtin(!spec_.devices.guest_agent.empty(), virtio_serial_position, "virtioSerial",
                pins.virtio_serial);
        builtin(spec_.devices.rng, rng_position, "rng", pins.rng);
        builtin(spec_.devices.balloon, balloon_position, "balloon", pins.balloon);
        builtin(spec_.cloud_init.has_value(), cloud_init_position, "cloudInit", pins.cloud_init);

        auto position_of = [](const PciAddress& a) -> std::optional<unsigned> {
            if (a.domain != 0 || a.slot != 0 || a.function != 0) return std::nullopt;
            if (a.bus < 1 || a.bus > libvirt_ports) return std::nullopt;
            return a.bus - 1u;
        };
        std::string allowed = fmt::format(
            "0000:01:00.0 to {} (behind root ports 1 to {})",
            spec::to_string(PciAddress{0, uint8_t(libvirt_ports), 0, 0}), libvirt_ports);
        Positions positions = place(requests, libvirt_ports, position_of, allowed, "PCIe devices");
        if (!problems_.empty()) return;

        const unsigned spares = spec_.hotplug.disks + spec_.hotplug.interfaces;
        unsigned used = 0, highest = 0;
        for (unsigned p = 0; p < positions.size(); ++p)
            if (positions[p]) {
                ++used;
                highest = p + 1;
            }
        const unsigned ports = std::max(highest, used + spares);
        if (ports > libvirt_ports) {
            problem("hotplug", fmt::format("{} devices and {} spare ports need {} root ports; the "
                                           "libvirt layout holds {}",
                                           used, spares, used + spares, libvirt_ports));
            return;
        }
        // Empty ports serve hotplug: the lowest hotplug.disks ones disks, the others NICs.
        unsigned disk_spares = 0;
        for (unsigned p = 0; p < ports; ++p) {
            Controller c;
            c.id = fmt::format("pci.{}", p + 1);  // libvirt's own QEMU ids
            c.model = "pcie-root-port";
            c.address = {0, 0, uint8_t(1 + p / 8), uint8_t(p % 8)};
            c.parent = "pcie.0";
            c.bus = p + 1;
            c.chassis = p + 1;
            c.port = 8 * c.address.slot + c.address.function;
            c.hotplug = true;
            c.multifunction = p % 8 == 0;
            c.io_reserve_zero = true;
            Place place{PciAddress{0, uint8_t(c.bus), 0, 0}, c.id};
            if (positions[p]) {
                const Wanted& w = wanted[static_cast<size_t>(*positions[p])];
                c.region = w.tag;
                if (w.places)
                    (*w.places)[w.index] = place;
                else
                    builtin_places_[w.index] = place;
            } else {
                c.region = disk_spares++ < spec_.hotplug.disks ? "disks" : "interfaces";
                topo_.hotplug_ports.push_back({c.region, c.id, place.address, c.address});
            }
            topo_.controllers.push_back(std::move(c));
        }
    }

    // At the field as the user wrote it: a converted manifest's own path (spec::source_path).
    void problem(const std::string& path, std::string reason) {
        problems_.push_back(
            {spec_.source_file, 0, 0, spec::source_path(spec_, path), std::move(reason)});
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
    // Each sata disk's AHCI port: its own `sataPort`, or else the lowest one still free, in list
    // order (which is what v1 did before sataPort: every golden file is unchanged).
    std::vector<unsigned> sata_ports_of() {
        std::vector<unsigned> port(spec_.disks.size(), 0);
        std::vector<bool> taken(sata_ports, false);
        unsigned count = 0;
        for (const auto& d : spec_.disks)
            if (d.bus == spec::DiskBus::sata && d.sata_port && *d.sata_port < sata_ports)
                taken[*d.sata_port] = true;
        unsigned next = 0;
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const auto& d = spec_.disks[i];
            if (d.bus != spec::DiskBus::sata) continue;
            ++count;
            if (d.sata_port) {
                port[i] = *d.sata_port;
                continue;
            }
            while (next < sata_ports && taken[next]) ++next;
            if (next == sata_ports) break;  // reported below, by count
            taken[next] = true;
            port[i] = next;
        }
        if (count > sata_ports)
            problem("disks", fmt::format("{} sata disks; q35's AHCI controller has {} ports", count,
                                         sata_ports));
        return port;
    }

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

    void add_disks() {
        const std::vector<unsigned> luns = scsi_luns();
        const std::vector<unsigned> ports = sata_ports_of();
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
                    dev.parent = disk_places_[i]->parent;
                    dev.address = disk_places_[i]->address;
                    break;
                case spec::DiskBus::scsi:
                    dev.driver = cdrom ? "scsi-cd" : "scsi-hd";
                    dev.parent = "scsi.0.0";
                    dev.unit = luns[i];
                    dev.address = builtin_places_[scsi_position]->address;
                    break;
                case spec::DiskBus::sata:
                    dev.driver = cdrom ? "ide-cd" : "ide-hd";
                    dev.unit = ports[i];
                    dev.parent = fmt::format("ide.{}", ports[i]);
                    dev.address = {0, 0, 0x1f, 2};
                    break;
            }
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_nics() {
        for (size_t i = 0; i < spec_.interfaces.size(); ++i) {
            const auto& n = spec_.interfaces[i];
            Device dev;
            dev.name = n.name;
            dev.kind = DeviceKind::interface;
            dev.id = n.name;
            dev.driver = n.model == spec::NicModel::virtio   ? "virtio-net-pci"
                         : n.model == spec::NicModel::e1000e ? "e1000e"
                                                             : "e1000";
            dev.address = nic_places_[i]->address;
            dev.parent = nic_places_[i]->parent;
            dev.slot = nic_places_[i]->slot;
            dev.mac = spec::to_string(n.mac);
            dev.spec_index = static_cast<int>(i);
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_host_devices() {
        for (size_t i = 0; i < spec_.host_devices.size(); ++i) {
            Device dev;
            dev.name = spec_.host_devices[i].name;
            dev.kind = DeviceKind::hostdev;
            dev.id = dev.name;
            dev.driver = "vfio-pci";
            dev.address = hostdev_places_[i]->address;
            dev.parent = hostdev_places_[i]->parent;
            dev.spec_index = static_cast<int>(i);
            topo_.devices.push_back(std::move(dev));
        }
    }

    void add_filesystems() {
        for (size_t i = 0; i < spec_.filesystems.size(); ++i) {
            Device dev;
            dev.name = spec_.filesystems[i].name;
            dev.kind = DeviceKind::filesystem;
            dev.id = dev.name;
            dev.driver = "vhost-user-fs-pci";
            dev.address = filesystem_places_[i]->address;
            dev.parent = filesystem_places_[i]->parent;
            dev.spec_index = static_cast<int>(i);
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
        dev.address = builtin_places_[position]->address;
        dev.parent = builtin_places_[position]->parent;
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
    Places disk_places_, nic_places_, hostdev_places_, filesystem_places_;
    std::array<std::optional<Place>, builtin_count> builtin_places_;
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
