// Layout v1: where each device class lives on q35. Frozen: changing a value changes guest ABI.
#pragma once

#include <array>
#include <string_view>

namespace qshim::topology::detail {

// Each class owns a fixed run of pcie.0 slots (8 root ports per slot, one per function) and
// the matching run of bus numbers. A port's bus number is region.first_bus + its position, so a
// device added to one class can never renumber a device of another: the last port of a region
// reserves (bus-reserve) every bus number up to the next region.
struct Region {
    std::string_view name;
    unsigned first_slot;  // on pcie.0
    unsigned slots;
    unsigned first_bus;
    unsigned ports() const { return slots * 8; }
};

inline constexpr Region disks_region{"disks", 0x02, 8, 1};                 // buses 1-64
inline constexpr Region interfaces_region{"interfaces", 0x0a, 4, 65};      // buses 65-96
inline constexpr Region controllers_region{"controllers", 0x0e, 1, 97};    // buses 97-104
inline constexpr Region host_devices_region{"hostDevices", 0x0f, 2, 105};  // buses 105-120
// One root port holding the PCIe-to-PCI bridge for conventional PCI devices (e1000).
inline constexpr Region legacy_region{"legacy", 0x11, 1, 121};  // bus 121, bridge bus 122
// virtio-fs shares (vhost-user-fs-pci), in list order. Added to v1 after every other region, so a
// spec without filesystems lays out exactly as before.
inline constexpr Region filesystems_region{"filesystems", 0x12, 1, 123};  // buses 123-130

inline constexpr std::array<const Region*, 6> regions{&disks_region,       &interfaces_region,
                                                      &controllers_region, &host_devices_region,
                                                      &legacy_region,      &filesystems_region};

// Fixed positions in the controllers region, so one appearing never moves another.
inline constexpr unsigned rng_position = 0;
inline constexpr unsigned scsi_position = 1;
inline constexpr unsigned balloon_position = 2;
inline constexpr unsigned virtio_serial_position = 3;
// The cloud-init seed (cloudInit), a read-only virtio-blk disk with the serial "cidata".
inline constexpr unsigned cloud_init_position = 4;
inline constexpr std::string_view cloud_init_serial = "cidata";

// Slots on the PCIe-to-PCI bridge; slot 0 is left free as libvirt does (SHPC lives there).
inline constexpr unsigned bridge_first_slot = 1;
inline constexpr unsigned bridge_last_slot = 31;
inline constexpr unsigned legacy_bridge_bus = 122;

// q35's built-in AHCI controller (00:1f.2) has six ports, QEMU buses ide.0 to ide.5.
inline constexpr unsigned sata_ports = spec::max_sata_ports;
// One virtio-scsi target, LUN per disk. 256 LUNs is far beyond any VM's need and below the
// 16384 virtio-scsi allows.
inline constexpr unsigned scsi_max_luns = spec::max_scsi_luns;

inline constexpr std::string_view v1_machine = "pc-q35-7.2";

// The libvirt layout (machine.layout: libvirt): root ports at pcie.0 slots 01-1e, 240 in all,
// the one with index i (1-240) holding bus i, as libvirt numbers q35's ports.
inline constexpr unsigned libvirt_ports = 30 * 8;

}  // namespace qshim::topology::detail
