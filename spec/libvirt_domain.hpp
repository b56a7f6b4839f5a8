// A libvirt domain XML (`virsh dumpxml`), read for the guest-visible places it gives devices:
// what `qshim convert --pin-from` pins. Only what places a device is read; the rest of the
// domain is libvirt's.
#pragma once

#include <optional>
#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

namespace qshim::spec::detail {

struct DomainDevice {
    std::string element;  // "disk", "interface", "controller", "memballoon", "rng", "video", ...
    std::string type;   // a controller's type (pci, scsi, usb, ...); a disk's device (disk, cdrom)
    std::string model;  // a controller's, interface's or memballoon's model
    std::string alias;  // <alias name>: KubeVirt writes "ua-" + the VMI's device name
    std::string mac;    // an interface's, lowercase
    std::string bus;    // a disk's <target bus>
    std::optional<unsigned> index;  // a controller's
    std::optional<PciAddress> pci;  // <address type='pci'>
    struct Drive {
        unsigned controller = 0, bus = 0, target = 0, unit = 0;
    };
    std::optional<Drive> drive;      // <address type='drive'>
    unsigned chassis = 0, port = 0;  // a pcie-root-port's <target>

    // "disk ua-data", "controller usb 0", "memballoon": how notes and errors name it.
    std::string label() const;
};

struct Domain {
    std::string file;
    std::string machine;  // <os><type machine=...>
    std::vector<DomainDevice> devices;

    const DomainDevice* controller(const std::string& type, unsigned index) const;
};

// Reads the domain XML; Errc::io when the file cannot be read, Errc::invalid_spec when it is not a
// libvirt domain or an address in it is malformed.
Result<Domain> read_domain_xml(const std::string& path);

}  // namespace qshim::spec::detail
