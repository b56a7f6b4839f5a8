// A VmSpec written back as JSON or YAML, every default made explicit.
#include <nlohmann/json.hpp>
#include <qshim/spec.hpp>

#include "common/cpu_list.hpp"
#include "common/json_yaml.hpp"

namespace qshim::spec {

namespace {

using Json = nlohmann::ordered_json;  // fields in schema order, never hash order

void optional_string(Json& j, const char* key, const std::string& value) {
    if (!value.empty()) j[key] = value;
}

Json disk_json(const Disk& d) {
    Json j{{"name", d.name}};
    if (d.blank()) {
        j["capacity"] = d.capacity_text;
    } else if (!d.vhost_user_socket.empty()) {
        j["backend"] = Json{{"type", "vhostUser"}, {"socket", d.vhost_user_socket_as_written}};
    } else if (d.from_folder()) {
        j["folder"] = d.folder_as_written;
        if (!d.volume_label.empty()) j["volumeLabel"] = d.volume_label;
    } else if (!d.no_medium()) {
        j["path"] = d.path_as_written;
        j["format"] = to_string(d.format);
    }
    j["bus"] = to_string(d.bus);
    j["device"] = to_string(d.device);
    j["readOnly"] = d.read_only;
    if (!d.vhost_user()) j["serial"] = d.serial;
    if (d.storage_daemon) j["storageDaemon"] = true;
    if (d.boot_order) j["bootOrder"] = *d.boot_order;
    if (d.pci_address) j["pciAddress"] = to_string(*d.pci_address);
    if (d.lun) j["lun"] = *d.lun;
    if (d.sata_port) j["sataPort"] = *d.sata_port;
    if (d.cache) j["cache"] = to_string(*d.cache);
    if (d.iothread) j["iothread"] = *d.iothread;
    if (d.ephemeral) j["ephemeral"] = true;
    return j;
}

Json interface_json(const Interface& i) {
    Json backend{{"type", to_string(i.backend.type)}};
    optional_string(backend, "name", i.backend.tap_name);
    if (i.backend.tap_fd) backend["fd"] = *i.backend.tap_fd;
    optional_string(backend, "socket", i.backend.socket_as_written);
    if (!i.backend.port_forwards.empty()) {
        Json forwards = Json::array();
        for (const auto& f : i.backend.port_forwards)
            forwards.push_back({{"protocol", to_string(f.protocol)},
                                {"hostAddress", f.host_address},
                                {"hostPort", f.host_port},
                                {"guestPort", f.guest_port}});
        backend["portForwards"] = forwards;
    }
    if (i.backend.type == BackendType::user) backend["restrict"] = i.backend.restricted;
    Json j{{"name", i.name},
           {"model", to_string(i.model)},
           {"mac", to_string(i.mac)},
           {"backend", backend}};
    if (i.boot_order) j["bootOrder"] = *i.boot_order;
    if (i.pci_address) j["pciAddress"] = to_string(*i.pci_address);
    return j;
}

Json spec_json(const VmSpec& s) {
    Json j;
    j["name"] = s.name;
    j["machine"] = {{"type", s.machine.type},
                    {"accel", to_string(s.machine.accel)},
                    {"topologyVersion", s.machine.topology_version},
                    {"layout", to_string(s.machine.layout)}};
    j["cpu"] = {
        {"sockets", s.cpu.sockets},     {"cores", s.cpu.cores},
        {"threads", s.cpu.threads},     {"model", s.cpu.model},
        {"dedicated", s.cpu.dedicated}, {"isolateEmulatorThread", s.cpu.isolate_emulator_thread}};
    if (const auto& pin = s.cpu.pinning) {
        Json p{{"vcpus", pin->vcpus}};
        if (!pin->emulator.empty()) p["emulator"] = qshim::detail::to_cpu_list(pin->emulator);
        if (!pin->iothreads.empty()) p["iothreads"] = qshim::detail::to_cpu_list(pin->iothreads);
        j["cpu"]["pinning"] = p;
    }
    j["memory"] = {{"size", s.memory.size_text},
                   {"hugepages", s.memory.hugepage_bytes == 0            ? "none"
                                 : s.memory.hugepage_bytes == (2u << 20) ? "2Mi"
                                                                         : "1Gi"},
                   {"prealloc", s.memory.prealloc},
                   {"shared", s.memory.shared}};
    if (s.numa.automatic) {
        j["numa"] = {{"guestNodes", "auto"}};
    } else if (!s.numa.nodes.empty()) {
        Json nodes = Json::array();
        for (const auto& n : s.numa.nodes) {
            Json node{{"vcpus", qshim::detail::to_cpu_list(n.vcpus)}, {"memory", n.memory_text}};
            if (n.host_nodes) node["hostNodes"] = qshim::detail::to_cpu_list(*n.host_nodes);
            nodes.push_back(node);
        }
        j["numa"] = {{"guestNodes", nodes}};
    }
    j["iothreads"] = s.iothreads;
    j["firmware"] = {{"type", to_string(s.firmware.type)}, {"secureBoot", s.firmware.secure_boot}};
    optional_string(j["firmware"], "uuid", s.firmware.uuid);
    optional_string(j["firmware"], "serial", s.firmware.serial);
    if (!s.boot.kernel.empty()) {
        Json boot = Json::object();
        optional_string(boot, "kernel", s.boot.kernel_as_written);
        optional_string(boot, "initrd", s.boot.initrd_as_written);
        optional_string(boot, "cmdline", s.boot.cmdline);
        j["boot"] = boot;
    }
    if (const auto& c = s.cloud_init) {
        Json seed = Json::object();
        seed["datasource"] = to_string(c->datasource);
        auto file = [&seed](const char* key, const SeedFile& f) {
            if (!f.present) return;
            if (f.file_as_written.empty())
                seed[key] = f.text;
            else
                seed[std::string(key) + "File"] = f.file_as_written;
        };
        file("userData", c->user_data);
        file("metaData", c->meta_data);
        file("networkConfig", c->network_config);
        j["cloudInit"] = seed;
    }
    j["disks"] = Json::array();
    for (const auto& d : s.disks) j["disks"].push_back(disk_json(d));
    j["interfaces"] = Json::array();
    for (const auto& i : s.interfaces) j["interfaces"].push_back(interface_json(i));
    if (!s.host_devices.empty()) {
        j["hostDevices"] = Json::array();
        for (const auto& h : s.host_devices) {
            Json hj{{"name", h.name}, {"hostAddress", to_string(h.host_address)}};
            if (h.pci_address) hj["pciAddress"] = to_string(*h.pci_address);
            j["hostDevices"].push_back(hj);
        }
    }
    if (!s.filesystems.empty()) {
        j["filesystems"] = Json::array();
        for (const auto& fs : s.filesystems)
            j["filesystems"].push_back(Json{{"name", fs.name},
                                            {"path", fs.path_as_written},
                                            {"tag", fs.tag},
                                            {"readOnly", fs.read_only}});
    }
    j["hotplug"] = {
        {"disks", s.hotplug.disks}, {"interfaces", s.hotplug.interfaces}, {"scsi", s.hotplug.scsi}};
    j["devices"] = {{"balloon", s.devices.balloon}, {"rng", s.devices.rng}};
    optional_string(j["devices"], "guestAgent", s.devices.guest_agent_as_written);
    if (const auto& pins = s.devices.pci_addresses; pins.any()) {
        Json a = Json::object();
        auto pin = [&a](const char* key, const std::optional<PciAddress>& v) {
            if (v) a[key] = to_string(*v);
        };
        pin("rng", pins.rng);
        pin("balloon", pins.balloon);
        pin("scsi", pins.scsi);
        pin("virtioSerial", pins.virtio_serial);
        pin("cloudInit", pins.cloud_init);
        j["devices"]["pciAddresses"] = std::move(a);
    }
    if (!s.serial.log.empty() || !s.serial.socket.empty()) {
        Json serial = Json::object();
        optional_string(serial, "log", s.serial.log_as_written);
        optional_string(serial, "socket", s.serial.socket_as_written);
        j["serial"] = serial;
    }
    j["lifecycle"] = {{"gracePeriodSeconds", s.lifecycle.grace_period_seconds}};
    Json security = Json::object();
    if (s.security.run_as)
        security["runAs"] = {{"uid", s.security.run_as->uid}, {"gid", s.security.run_as->gid}};
    security["seccomp"] = to_string(s.security.seccomp);
    j["security"] = security;
    return j;
}

}  // namespace

Result<std::string> to_json(const VmSpec& spec) {
    auto text = detail::dump_json(spec_json(spec), 2,
                                  "the spec of " + detail::dump_lossy(nlohmann::json(spec.name)));
    if (!text) return std::move(text).error();
    return *text + "\n";
}

Result<std::string> to_yaml(const VmSpec& spec) {
    return detail::json_to_yaml(spec_json(spec),
                                "the spec of " + detail::dump_lossy(nlohmann::json(spec.name)));
}

}  // namespace qshim::spec
