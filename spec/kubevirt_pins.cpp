// KubeVirt manifests: `--pin-from DOMAIN.xml`, the places a libvirt domain gave the VM's devices,
// pinned in the spec the manifest becomes (machine.layout: libvirt, docs/kubevirt.md).
#include <fmt/format.h>

#include <algorithm>

#include "spec/kubevirt_converter.hpp"
#include "spec/values.hpp"

namespace qshim::spec::detail::kubevirt {

namespace {

Node* entry(Node& map, std::string_view key) {
    for (auto& e : map.entries)
        if (e.key.value == key) return &e.value;
    return nullptr;
}

std::string scalar(const Node& map, std::string_view key) {
    const Node* n = map.find(key);
    return n && n->kind == Node::Kind::scalar ? n->value : std::string();
}

bool is_virtio(const std::string& model) { return model.starts_with("virtio"); }

}  // namespace

// A manifest field already pinned must agree with libvirt; an unpinned one takes libvirt's.
void Converter::pin(Node& item, const char* key, Node value, const std::string& spec_path,
                    const DomainDevice& from) {
    if (const Node* had = item.find(key)) {
        if (had->value != value.value)
            diags_.add(*had, manifest_path(out_, spec_path + "." + key),
                       fmt::format("{} here, {} in {} ({})", had->value, value.value, domain_->file,
                                   from.label()));
        return;
    }
    put(item, key, std::move(value));
}

const DomainDevice* Converter::domain_device(const std::string& element, const std::string& name,
                                             const std::string& mac) {
    for (const auto& d : domain_->devices)
        if (d.element == element && d.alias == "ua-" + name) return &d;
    if (!mac.empty())
        for (const auto& d : domain_->devices)
            if (d.element == element && d.alias.empty() && d.mac == mac) return &d;
    return nullptr;
}

// The device sits on libvirt's root port with index = its bus: a port of the libvirt layout.
bool Converter::on_root_port(const DomainDevice& d, const Node& at, const std::string& path) {
    const DomainDevice* port = d.pci->bus ? domain_->controller("pci", d.pci->bus) : nullptr;
    if (d.pci->domain == 0 && d.pci->slot == 0 && d.pci->function == 0 && port &&
        port->model == "pcie-root-port")
        return true;
    diags_.add(at, path,
               fmt::format("{} puts it at {}{}: qshim lays out one device per pcie-root-port, "
                           "at slot 0 of its bus",
                           domain_->file, spec::to_string(*d.pci),
                           port ? fmt::format(", behind a {}", port->model) : ""));
    return false;
}

void Converter::pin_from() {
    const Domain& dom = *domain_;
    std::vector<const DomainDevice*> used;
    auto note = [this](std::string text) {
        if (notes_) notes_->push_back(std::move(text));
    };

    // The machine type is guest ABI too: libvirt writes the versioned one it resolved.
    Node* machine = entry(out_.spec, "machine");
    if (!machine) {
        put(out_.spec, "machine", map(out_.spec));
        machine = entry(out_.spec, "machine");
    }
    if (!dom.machine.empty()) {
        Node* type = entry(*machine, "type");
        if (!type || type->value == "q35") {
            if (type)
                *type = text(dom.machine, *type);
            else
                put(*machine, "type", text(dom.machine, *machine));
            origin("machine.type", dom.file + " <os><type machine>");
        } else if (type->value != dom.machine) {
            diags_.add(*type, "spec.domain.machine.type",
                       fmt::format("{} here, {} in {}", type->value, dom.machine, dom.file));
        }
    }
    put(*machine, "layout", text("libvirt", *machine));

    // Disks, by KubeVirt's alias ua-NAME.
    bool scsi_disks = false;
    for (size_t i = 0; i < disks_.items.size(); ++i) {
        Node& disk = disks_.items[i];
        const std::string name = scalar(disk, "name"), bus = scalar(disk, "bus");
        const std::string item = fmt::format("disks[{}]", i);
        const std::string path = manifest_path(out_, item);
        scsi_disks = scsi_disks || bus == "scsi";
        const DomainDevice* d = domain_device("disk", name, "");
        if (!d) {
            diags_.add(disk, path,
                       fmt::format("{} has no <disk> with alias ua-{}", dom.file, name));
            continue;
        }
        used.push_back(d);
        if (d->bus != bus) {
            diags_.add(disk, path,
                       fmt::format("a {} disk here, a {} disk in {}", bus, d->bus, dom.file));
            continue;
        }
        if (bus == "virtio") {
            if (!d->pci)
                diags_.add(disk, path, fmt::format("{} gives it no PCI address", dom.file));
            else if (on_root_port(*d, disk, path))
                pin(disk, "pciAddress", text(spec::to_string(*d->pci), disk), item, *d);
        } else if (!d->drive) {
            diags_.add(disk, path, fmt::format("{} gives it no drive address", dom.file));
        } else if (bus == "scsi") {
            // qshim has one virtio-scsi controller with one target; the LUN is libvirt's unit.
            if (d->drive->controller || d->drive->bus || d->drive->target || d->drive->unit > 255)
                diags_.add(
                    disk, path,
                    fmt::format("{} puts it on SCSI controller {} bus {} target {}: qshim "
                                "has controller 0, bus 0, target 0, LUNs 0-255",
                                dom.file, d->drive->controller, d->drive->bus, d->drive->target));
            else
                pin(disk, "lun", number(d->drive->unit, disk), item, *d);
        } else if (d->drive->controller || d->drive->bus || d->drive->unit >= max_sata_ports) {
            diags_.add(disk, path,
                       fmt::format("{} puts it on SATA controller {} unit {}: q35's AHCI "
                                   "controller is 0, with ports 0-5",
                                   dom.file, d->drive->controller, d->drive->unit));
        } else {
            pin(disk, "sataPort", number(d->drive->unit, disk), item, *d);
        }
    }
    if (!cloud_init_disk_.empty())
        if (const DomainDevice* d = domain_device("disk", cloud_init_disk_, "")) {
            used.push_back(d);
            if (d->pci && d->bus == "virtio")
                builtin_pins_.emplace_back("cloudInit", d);
            else
                note(
                    fmt::format("{}: qshim's cloud-init seed is a virtio disk of its own, not "
                                "libvirt's {} disk",
                                d->label(), d->bus));
        }

    // Interfaces, by alias, else by MAC.
    for (size_t i = 0; i < interfaces_.items.size(); ++i) {
        Node& nic = interfaces_.items[i];
        const std::string name = scalar(nic, "name");
        const std::string item = fmt::format("interfaces[{}]", i);
        const std::string path = manifest_path(out_, item);
        const DomainDevice* d = domain_device("interface", name, scalar(nic, "mac"));
        if (!d) {
            diags_.add(
                nic, path,
                fmt::format("{} has no <interface> with alias ua-{} or its MAC", dom.file, name));
            continue;
        }
        used.push_back(d);
        if (!d->pci)
            diags_.add(nic, path, fmt::format("{} gives it no PCI address", dom.file));
        else if (on_root_port(*d, nic, path))
            pin(nic, "pciAddress", text(spec::to_string(*d->pci), nic), item, *d);
    }

    // Built-in devices the converted spec has: each keeps libvirt's place.
    for (const auto& d : dom.devices) {
        if (!d.pci) continue;
        const char* key = nullptr;
        bool present = false;
        if (d.element == "controller" && d.type == "scsi" && is_virtio(d.model)) {
            key = "scsi";
            present = true;  // kept for LUNs hot-plugged later when no disk is scsi
            if (!scsi_disks) {
                Node hotplug = map(out_.spec);
                put(hotplug, "scsi", boolean(true, out_.spec));
                put(out_.spec, "hotplug", std::move(hotplug));
            }
        } else if (d.element == "memballoon" && is_virtio(d.model)) {
            key = "balloon";
            present = balloon_;
        } else if (d.element == "rng") {
            key = "rng";
            present = rng_;
        }
        if (key && present) {
            builtin_pins_.emplace_back(key, &d);
            used.push_back(&d);
        }
    }
    // Built-in devices are not the manifest's fields: a problem with one is told at devices.
    const Node& devices = devices_node_ ? *devices_node_ : *root_;
    std::erase_if(builtin_pins_, [&](const auto& pin) {
        return !on_root_port(*pin.second, devices, "spec.domain.devices (" + pin.first + ")");
    });

    // What libvirt has and the spec does not: its place stays empty in the guest.
    for (const auto& d : dom.devices) {
        if (std::find(used.begin(), used.end(), &d) != used.end()) continue;
        if (d.element == "controller" &&
            (d.type == "pci" || (d.type == "sata" && d.pci == PciAddress{0, 0, 0x1f, 2})))
            continue;  // the ports are qshim's own (checked below); q35's AHCI is built in
        if (d.pci)
            note(
                fmt::format("{} at {}: the VM has no such device in qshim; that place stays "
                            "empty",
                            d.label(), spec::to_string(*d.pci)));
        else if (d.element == "disk" || d.element == "interface")
            note(fmt::format("{}: no such device in the manifest", d.label()));
    }
    // libvirt's root ports against the layout's: the same addresses, chassis and port numbers.
    for (const auto& d : dom.devices) {
        if (d.element != "controller" || d.type != "pci" || !d.index || *d.index == 0) continue;
        const unsigned i = *d.index - 1;
        const PciAddress ours{0, 0, uint8_t(1 + i / 8), uint8_t(i % 8)};
        if (d.model != "pcie-root-port")
            note(fmt::format("{} ({}): the libvirt layout has only pcie-root-ports", d.label(),
                             d.model));
        else if (d.pci != ours || d.chassis != *d.index || d.port != 8u * ours.slot + ours.function)
            note(
                fmt::format("{} is at {} (chassis {}, port {:#x}); qshim's is at {} (chassis "
                            "{}, port {:#x})",
                            d.label(), d.pci ? spec::to_string(*d.pci) : "?", d.chassis, d.port,
                            spec::to_string(ours), *d.index, 8u * ours.slot + ours.function));
    }
}

}  // namespace qshim::spec::detail::kubevirt
