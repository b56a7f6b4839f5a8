// to_yaml: a VmSpec written back as YAML with every default made explicit.
#include <qshim/spec.hpp>

#include <yaml-cpp/emitter.h>
#include <yaml-cpp/emittermanip.h>

namespace qshim::spec {

namespace {

void pci_field(YAML::Emitter& out, const char* key, const std::optional<PciAddress>& a) {
    if (a) out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << to_string(*a);
}

void optional_string(YAML::Emitter& out, const char* key, const std::string& value) {
    if (!value.empty()) out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
}

void disks(YAML::Emitter& out, const std::vector<Disk>& list) {
    out << YAML::Key << "disks" << YAML::Value << YAML::BeginSeq;
    for (const Disk& d : list) {
        out << YAML::BeginMap;
        out << YAML::Key << "name" << YAML::Value << d.name;
        out << YAML::Key << "path" << YAML::Value << YAML::DoubleQuoted << d.path_as_written;
        out << YAML::Key << "format" << YAML::Value << to_string(d.format);
        out << YAML::Key << "bus" << YAML::Value << to_string(d.bus);
        out << YAML::Key << "device" << YAML::Value << to_string(d.device);
        out << YAML::Key << "readOnly" << YAML::Value << d.read_only;
        out << YAML::Key << "serial" << YAML::Value << YAML::DoubleQuoted << d.serial;
        if (d.boot_order) out << YAML::Key << "bootOrder" << YAML::Value << *d.boot_order;
        pci_field(out, "pciAddress", d.pci_address);
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;
}

void interfaces(YAML::Emitter& out, const std::vector<Interface>& list) {
    out << YAML::Key << "interfaces" << YAML::Value << YAML::BeginSeq;
    for (const Interface& i : list) {
        out << YAML::BeginMap;
        out << YAML::Key << "name" << YAML::Value << i.name;
        out << YAML::Key << "model" << YAML::Value << to_string(i.model);
        out << YAML::Key << "mac" << YAML::Value << YAML::DoubleQuoted << to_string(i.mac);
        out << YAML::Key << "backend" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "type" << YAML::Value << to_string(i.backend.type);
        optional_string(out, "name", i.backend.tap_name);
        if (i.backend.tap_fd) out << YAML::Key << "fd" << YAML::Value << *i.backend.tap_fd;
        optional_string(out, "socket", i.backend.socket_as_written);
        out << YAML::EndMap;
        if (i.boot_order) out << YAML::Key << "bootOrder" << YAML::Value << *i.boot_order;
        pci_field(out, "pciAddress", i.pci_address);
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;
}

}  // namespace

std::string to_yaml(const VmSpec& s) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << s.name;
    out << YAML::Key << "machine" << YAML::Value << YAML::BeginMap
        << YAML::Key << "type" << YAML::Value << s.machine.type
        << YAML::Key << "accel" << YAML::Value << to_string(s.machine.accel)
        << YAML::Key << "topologyVersion" << YAML::Value << s.machine.topology_version << YAML::EndMap;
    out << YAML::Key << "cpu" << YAML::Value << YAML::BeginMap
        << YAML::Key << "sockets" << YAML::Value << s.cpu.sockets
        << YAML::Key << "cores" << YAML::Value << s.cpu.cores
        << YAML::Key << "threads" << YAML::Value << s.cpu.threads
        << YAML::Key << "model" << YAML::Value << YAML::DoubleQuoted << s.cpu.model << YAML::EndMap;
    out << YAML::Key << "memory" << YAML::Value << YAML::BeginMap
        << YAML::Key << "size" << YAML::Value << s.memory.size_text << YAML::EndMap;
    if (!s.boot.kernel.empty()) {
        out << YAML::Key << "boot" << YAML::Value << YAML::BeginMap;
        optional_string(out, "kernel", s.boot.kernel_as_written);
        optional_string(out, "initrd", s.boot.initrd_as_written);
        optional_string(out, "cmdline", s.boot.cmdline);
        out << YAML::EndMap;
    }
    disks(out, s.disks);
    interfaces(out, s.interfaces);
    if (!s.host_devices.empty()) {
        out << YAML::Key << "hostDevices" << YAML::Value << YAML::BeginSeq;
        for (const HostDevice& h : s.host_devices) {
            out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << h.name;
            out << YAML::Key << "hostAddress" << YAML::Value << YAML::DoubleQuoted << to_string(h.host_address);
            pci_field(out, "pciAddress", h.pci_address);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }
    out << YAML::Key << "hotplug" << YAML::Value << YAML::BeginMap
        << YAML::Key << "disks" << YAML::Value << s.hotplug.disks
        << YAML::Key << "interfaces" << YAML::Value << s.hotplug.interfaces << YAML::EndMap;
    out << YAML::Key << "devices" << YAML::Value << YAML::BeginMap
        << YAML::Key << "balloon" << YAML::Value << s.devices.balloon
        << YAML::Key << "rng" << YAML::Value << s.devices.rng;
    optional_string(out, "guestAgent", s.devices.guest_agent_as_written);
    out << YAML::EndMap;
    if (!s.serial.log.empty() || !s.serial.socket.empty()) {
        out << YAML::Key << "serial" << YAML::Value << YAML::BeginMap;
        optional_string(out, "log", s.serial.log_as_written);
        optional_string(out, "socket", s.serial.socket_as_written);
        out << YAML::EndMap;
    }
    out << YAML::Key << "lifecycle" << YAML::Value << YAML::BeginMap
        << YAML::Key << "gracePeriodSeconds" << YAML::Value << s.lifecycle.grace_period_seconds << YAML::EndMap;
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

}  // namespace qshim::spec
