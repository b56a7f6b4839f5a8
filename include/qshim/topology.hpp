// The PCI topology: a pure, versioned function of the spec (see docs/topology.md, the contract).
#pragma once

#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

namespace qshim::topology {

using spec::PciAddress;

// A PCIe root port or the PCIe-to-PCI bridge.
struct Controller {
    std::string id;      // QEMU id, e.g. "rp.disks.0"
    std::string model;   // "pcie-root-port" or "pcie-pci-bridge"
    std::string region;  // the device class the port serves: disks, interfaces, ...
    PciAddress address;  // the controller's own function
    std::string parent;  // QEMU bus it plugs into
    unsigned bus = 0;    // its secondary bus number, as the firmware numbers it
    unsigned chassis = 0;
    unsigned port = 0;
    bool hotplug = false;
    bool multifunction = false;
    unsigned bus_reserve = 0;  // 0: not set (see the SeaBIOS quirk in docs/topology.md)
    bool io_reserve_zero = false;
};

enum class DeviceKind { disk, interface, controller, hostdev, system, filesystem };
QSHIM_API const char* to_string(DeviceKind kind);

struct Device {
    std::string name;  // the spec's name; built-in devices are named after their role
    DeviceKind kind = DeviceKind::disk;
    std::string driver;            // QEMU device driver
    std::string id;                // QEMU device id
    PciAddress address;            // guest-visible address of the function the guest driver binds
    std::string parent;            // QEMU bus id
    unsigned slot = 0;             // PCI slot on `parent` (PCI parents only)
    std::optional<unsigned> unit;  // SCSI LUN or AHCI port, for disks on a controller
    std::string serial;            // disks
    std::string mac;               // interfaces
    int spec_index = -1;           // position in the spec's list for its class; -1 for built-ins
};

// An empty root port reserved for hot-plugging a device of one class.
struct HotplugPort {
    std::string cls;          // "disks" or "interfaces"
    std::string id;           // the root port's QEMU id
    PciAddress address;       // the address a device plugged here gets
    PciAddress port_address;  // the root port's own function
};

struct Topology {
    int version = 1;
    std::string machine;  // versioned machine type, e.g. pc-q35-7.2
    std::vector<Controller> controllers;
    std::vector<Device> devices;
    std::vector<HotplugPort> hotplug_ports;

    QSHIM_API const Device* find_device(std::string_view name, DeviceKind kind) const;
};

// Lays out the spec's devices. Fails with Errc::topology for impossible or conflicting pins and
// for specs that exceed what the layout can hold. Pure: no I/O, same input, same output.
QSHIM_API Result<Topology> plan(const spec::VmSpec& spec);

// The stable JSON rendering (docs/topology.md): keys in fixed order, two-space indent. A
// topology planned from a spec built in code may hold names that are not valid UTF-8:
// Errc::invalid_spec, as for spec::to_json.
QSHIM_API Result<std::string> to_json(const Topology& topology);
QSHIM_API Result<std::string> to_yaml(const Topology& topology);
// One device in the same shape as in to_json's "devices" (what the API returns for a hotplug).
QSHIM_API Result<std::string> to_json(const Device& device);

// The spec with every device's address pinned (pciAddress) and every MAC made explicit.
QSHIM_API spec::VmSpec resolve(const spec::VmSpec& spec, const Topology& topology);

// A guest-visible difference between two topologies.
struct Change {
    enum class Type { added, removed, moved, changed };
    Type type;
    std::string subject;  // e.g. "disk root", "machine"
    std::string detail;   // e.g. "0000:01:00.0 -> 0000:02:00.0"
    bool breaks_abi() const { return type != Type::added; }
};

QSHIM_API std::vector<Change> diff(const Topology& before, const Topology& after);
QSHIM_API std::string to_string(const Change& change);

}  // namespace qshim::topology
