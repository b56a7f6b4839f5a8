// load_spec/parse_spec: a positioned document to a validated VmSpec, reporting every problem.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <qshim/spec.hpp>
#include <set>

#include "common/cpu_list.hpp"
#include "spec/cloud_init.hpp"
#include "spec/decoder.hpp"
#include "spec/document.hpp"
#include "spec/kubevirt.hpp"
#include "spec/libvirt_domain.hpp"
#include "spec/values.hpp"

namespace qshim::spec {

using detail::Diagnostics;
using detail::Fields;
using detail::Node;

namespace {

namespace fs = std::filesystem;

// An ISO 9660 volume id as qshim writes them (libisofs keeps these characters as they are).
bool iso_label(std::string_view s) {
    return !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
}

class SpecReader {
  public:
    SpecReader(Diagnostics& diags, VmSpec& spec) : diags_(diags), spec_(spec) {}

    void read(const Node& root) {
        root_ = &root;
        Fields f(diags_, root, "");
        f.require("name");
        if (f.string("name", spec_.name) && !detail::is_dns_label(spec_.name))
            diags_.add(
                *root.find("name"), "name",
                "must be a DNS label: lowercase letters, digits and '-', at most 63 characters");
        if (auto* n = f.get("machine"); n && expect(*n, Node::Kind::map, "machine")) machine(*n);
        if (auto* n = f.get("cpu"); n && expect(*n, Node::Kind::map, "cpu")) {
            cpu_node_ = n;
            cpu(*n);
        }
        if (auto* n = f.get("memory"); n && expect(*n, Node::Kind::map, "memory")) memory(*n);
        if (auto* n = f.get("numa"); n && expect(*n, Node::Kind::map, "numa")) numa(*n);
        // 64: far more than the disks one VM can keep busy; each IOThread is a host thread.
        f.uint("iothreads", spec_.iothreads, 0, 64);
        if (auto* n = f.get("firmware"); n && expect(*n, Node::Kind::map, "firmware")) firmware(*n);
        if (auto* n = f.get("boot"); n && expect(*n, Node::Kind::map, "boot")) boot(*n);
        if (auto* n = f.get("cloudInit"); n && expect(*n, Node::Kind::map, "cloudInit"))
            spec_.cloud_init = detail::read_cloud_init(diags_, *n, spec_.base_dir);
        if (auto* n = f.get("disks"); n && expect(*n, Node::Kind::sequence, "disks"))
            for (size_t i = 0; i < n->items.size(); ++i)
                disk(n->items[i], fmt::format("disks[{}]", i));
        if (auto* n = f.get("interfaces"); n && expect(*n, Node::Kind::sequence, "interfaces"))
            for (size_t i = 0; i < n->items.size(); ++i)
                interface(n->items[i], fmt::format("interfaces[{}]", i));
        if (auto* n = f.get("hostDevices"); n && expect(*n, Node::Kind::sequence, "hostDevices"))
            for (size_t i = 0; i < n->items.size(); ++i)
                host_device(n->items[i], fmt::format("hostDevices[{}]", i));
        if (auto* n = f.get("filesystems"); n && expect(*n, Node::Kind::sequence, "filesystems"))
            for (size_t i = 0; i < n->items.size(); ++i)
                filesystem(n->items[i], fmt::format("filesystems[{}]", i));
        if (auto* n = f.get("hotplug"); n && expect(*n, Node::Kind::map, "hotplug")) hotplug(*n);
        if (auto* n = f.get("devices"); n && expect(*n, Node::Kind::map, "devices")) devices(*n);
        if (auto* n = f.get("serial"); n && expect(*n, Node::Kind::map, "serial")) serial(*n);
        if (auto* n = f.get("lifecycle"); n && expect(*n, Node::Kind::map, "lifecycle"))
            lifecycle(*n);
        if (auto* n = f.get("security"); n && expect(*n, Node::Kind::map, "security")) security(*n);
        f.finish();
        cross_checks();
    }

    // One device on its own, as the REST API receives it.
    void read_disk(const Node& root) {
        disk(root, "");
        if (spec_.disks.empty()) return;
        const Disk& d = spec_.disks.back();
        if (d.ephemeral)
            diags_.add(*root.find("ephemeral"), "ephemeral",
                       "an ephemeral disk's overlay is made when the VM starts; hot-plug the "
                       "image read-only, or as a disk of its own");
        if (d.blank())
            diags_.add(*root.find("capacity"), "capacity",
                       "a blank disk is made when the VM starts; hot-plug an image (qemu-img "
                       "create makes a blank one)");
        if (d.from_folder())
            diags_.add(*root.find("folder"), "folder",
                       "a folder disk's image is made when the VM starts; hot-plug an ISO "
                       "image (xorriso makes one) as a cdrom");
        if (!d.iothread) return;
        const Node& at = *root.find("iothread");
        if (*d.iothread >= spec_.iothreads)
            diags_.add(at, "iothread",
                       fmt::format("IOThread {} does not exist: the VM has iothreads: {}",
                                   *d.iothread, spec_.iothreads));
        else if (d.bus == DiskBus::scsi)
            diags_.add(at, "iothread",
                       "a scsi disk runs on its controller's IOThread, set when the VM started; "
                       "leave iothread unset");
    }
    void read_interface(const Node& root) {
        interface(root, "");
        if (!spec_.interfaces.empty() && spec_.interfaces.back().backend.type == BackendType::passt)
            if (const Node* b = root.find("backend"))
                diags_.add(*b, "backend.type",
                           "hot-plugging a NIC on passt is not supported yet: declare it in the "
                           "spec");
    }

  private:
    // "disks[1]" + "format" -> "disks[1].format"; a lone device (a request body) has no prefix.
    static std::string at(const std::string& prefix, std::string_view key) {
        return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
    }

    bool expect(const Node& n, Node::Kind kind, const std::string& path) {
        return detail::expect_kind(diags_, n, kind, path);
    }

    // Reads a path field: any bytes but NUL, resolved against the spec's folder. Paths reach
    // QEMU only inside JSON or as whole argv elements. The document reader refuses a raw NUL, but
    // an escape ("\0", "\u0000") still makes one.
    bool path(Fields& f, std::string_view key, std::string& resolved, std::string& as_written) {
        if (!f.string(key, as_written)) return false;
        if (as_written.empty() || as_written.find('\0') != std::string::npos) {
            diags_.add(*f.get(key), f.path_of(key),
                       as_written.empty() ? "must not be empty" : "must not contain a NUL byte");
            as_written.clear();
            return false;
        }
        fs::path p(as_written);
        resolved = (p.is_absolute() ? p : fs::path(spec_.base_dir) / p).lexically_normal().string();
        const Node& at = *f.get(key);
        spec_.positions[f.path_of(key)] = {at.line, at.column};
        return true;
    }

    std::optional<PciAddress> pci(Fields& f, std::string_view key) {
        std::string text;
        if (!f.string(key, text)) return std::nullopt;
        auto a = parse_pci_address(text);
        if (!a)
            diags_.add(*f.get(key), f.path_of(key),
                       "must be a PCI address DDDD:BB:SS.F (hex, slot at most 1f)");
        return a;
    }

    // A kernel CPU list ("0-3,8"), written as a string or, for one CPU, a number.
    std::optional<HostSet> cpu_list(Fields& f, std::string_view key, const char* what) {
        const Node* n = f.get(key);
        if (!n) return std::nullopt;
        std::optional<HostSet> set;
        if (n->kind == Node::Kind::scalar) set = qshim::detail::parse_cpu_list(n->value);
        if (!set || set->empty()) {
            diags_.add(*n, f.path_of(key),
                       fmt::format("must be a list of {} such as \"0-3,8\"", what));
            return std::nullopt;
        }
        return set;
    }

    // 16Mi, 4Ti: the largest unit that divides the size.
    static std::string size_text(uint64_t bytes) {
        const char* units[] = {"Mi", "Gi", "Ti"};
        uint64_t value = bytes >> 20;
        size_t unit = 0;
        while (unit + 1 < std::size(units) && value >= 1024 && value % 1024 == 0) {
            value /= 1024;
            ++unit;
        }
        return fmt::format("{}{}", value, units[unit]);
    }

    // A size such as 512Mi: a whole number of MiB from `min` up to `max`.
    std::optional<uint64_t> mebibytes(Fields& f, std::string_view key, uint64_t min, uint64_t max) {
        const Node* n = f.get(key);
        if (!n) return std::nullopt;
        auto bytes =
            n->kind == Node::Kind::scalar ? detail::parse_quantity(n->value) : std::nullopt;
        if (!bytes) {
            diags_.add(*n, f.path_of(key),
                       "must be a size such as 512Mi or 4Gi (suffix Ki, Mi, Gi or Ti)");
            return std::nullopt;
        }
        if (*bytes % (1u << 20) != 0) {
            diags_.add(*n, f.path_of(key), "must be a whole number of MiB");
            return std::nullopt;
        }
        if (*bytes < min || *bytes > max) {
            diags_.add(*n, f.path_of(key),
                       fmt::format("must be from {} to {}", size_text(min), size_text(max)));
            return std::nullopt;
        }
        return bytes;
    }

    void machine(const Node& n) {
        Fields f(diags_, n, "machine");
        if (f.string("type", spec_.machine.type) && spec_.machine.type != "q35" &&
            !detail::is_versioned_q35(spec_.machine.type))
            diags_.add(*f.get("type"), "machine.type",
                       "must be q35 or a versioned q35 type such as pc-q35-7.2");
        f.choice("accel", spec_.machine.accel,
                 {{"auto", Accel::automatic}, {"kvm", Accel::kvm}, {"tcg", Accel::tcg}});
        unsigned version = 1;
        if (f.uint("topologyVersion", version, 1, 1000)) {
            if (version != 1)
                diags_.add(
                    *f.get("topologyVersion"), "machine.topologyVersion",
                    fmt::format("topology version {} is not known to this qshim (it knows 1)",
                                version));
            spec_.machine.topology_version = static_cast<int>(version);
        }
        f.choice("layout", spec_.machine.layout,
                 {{"regions", PciLayout::regions}, {"libvirt", PciLayout::libvirt}});
        f.finish();
    }

    void cpu(const Node& n) {
        Fields f(diags_, n, "cpu");
        // 255 vCPUs is QEMU's q35 limit without an IOMMU providing interrupt remapping.
        f.uint("sockets", spec_.cpu.sockets, 1, 255);
        f.uint("cores", spec_.cpu.cores, 1, 255);
        f.uint("threads", spec_.cpu.threads, 1, 255);
        if (f.string("model", spec_.cpu.model) && !detail::is_cpu_model(spec_.cpu.model))
            diags_.add(
                *f.get("model"), "cpu.model",
                "must be a QEMU CPU model name (letters, digits, '.', '_', '-'; no CPU flags)");
        if (spec_.cpu.count() > 255)
            diags_.add(n, "cpu",
                       fmt::format("sockets x cores x threads = {} vCPUs; q35 supports at most 255",
                                   spec_.cpu.count()));
        f.boolean("dedicated", spec_.cpu.dedicated);
        if (f.boolean("isolateEmulatorThread", spec_.cpu.isolate_emulator_thread) &&
            spec_.cpu.isolate_emulator_thread && !spec_.cpu.dedicated)
            diags_.add(*f.get("isolateEmulatorThread"), "cpu.isolateEmulatorThread",
                       "needs cpu.dedicated: true (with cpu.pinning, name the emulator's CPUs "
                       "in cpu.pinning.emulator)");
        if (auto* p = f.get("pinning"); p && expect(*p, Node::Kind::map, "cpu.pinning")) {
            if (spec_.cpu.dedicated)
                diags_.add(*p, "cpu.pinning",
                           "cannot be combined with cpu.dedicated: dedicated picks the CPUs from "
                           "the pod's cpuset, pinning names them");
            pinning(*p);
        }
        f.finish();
    }

    void pinning(const Node& n) {
        Fields f(diags_, n, "cpu.pinning");
        CpuPinning pin;
        f.require("vcpus");
        bool ok = false;
        if (auto* v = f.get("vcpus"); v && expect(*v, Node::Kind::sequence, "cpu.pinning.vcpus")) {
            ok = true;
            std::set<unsigned> seen;
            for (size_t i = 0; i < v->items.size(); ++i) {
                const Node& item = v->items[i];
                std::string p = fmt::format("cpu.pinning.vcpus[{}]", i);
                auto cpu = item.kind == Node::Kind::scalar && !item.quoted
                               ? detail::parse_uint(item.value)
                               : std::nullopt;
                if (!cpu || *cpu >= (1u << 16)) {
                    diags_.add(item, p, "must be a host CPU number");
                    ok = false;
                } else if (!seen.insert(static_cast<unsigned>(*cpu)).second) {
                    diags_.add(item, p,
                               fmt::format("host CPU {} is given to two vCPUs; each vCPU gets "
                                           "its own",
                                           *cpu));
                    ok = false;
                } else {
                    pin.vcpus.push_back(static_cast<unsigned>(*cpu));
                }
            }
            if (ok && pin.vcpus.size() != spec_.cpu.count()) {
                diags_.add(*v, "cpu.pinning.vcpus",
                           fmt::format("names {} host CPUs for {} vCPUs (sockets x cores x "
                                       "threads); give one per vCPU",
                                       pin.vcpus.size(), spec_.cpu.count()));
                ok = false;
            }
        }
        if (auto set = cpu_list(f, "emulator", "host CPUs")) pin.emulator = *set;
        if (auto set = cpu_list(f, "iothreads", "host CPUs")) pin.iothreads = *set;
        f.finish();
        if (ok) spec_.cpu.pinning = std::move(pin);
    }

    void memory(const Node& n) {
        Fields f(diags_, n, "memory");
        f.require("size");
        if (auto bytes = mebibytes(f, "size", 16ull << 20, 4ull << 40)) {
            spec_.memory.size_bytes = *bytes;
            spec_.memory.size_text = f.get("size")->value;
        }
        f.choice("hugepages", spec_.memory.hugepage_bytes,
                 {{"none", uint64_t{0}}, {"2Mi", uint64_t{2} << 20}, {"1Gi", uint64_t{1} << 30}});
        f.boolean("prealloc", spec_.memory.prealloc);
        f.boolean("shared", spec_.memory.shared);
        f.finish();
    }

    void numa(const Node& n) {
        Fields f(diags_, n, "numa");
        f.require("guestNodes");
        const Node* g = f.get("guestNodes");
        f.finish();
        if (!g) return;
        if (g->kind == Node::Kind::scalar && g->value == "auto") {
            spec_.numa.automatic = true;
            numa_node_ = g;
            return;
        }
        if (g->kind != Node::Kind::sequence || g->items.empty()) {
            diags_.add(*g, "numa.guestNodes", "must be auto or a non-empty list of nodes");
            return;
        }
        numa_node_ = g;
        for (size_t i = 0; i < g->items.size(); ++i) {
            std::string p = fmt::format("numa.guestNodes[{}]", i);
            if (!expect(g->items[i], Node::Kind::map, p)) continue;
            Fields nf(diags_, g->items[i], p);
            NumaNode node;
            nf.require("vcpus");
            nf.require("memory");
            if (auto set = cpu_list(nf, "vcpus", "guest vCPU indices")) node.vcpus = *set;
            if (auto bytes = mebibytes(nf, "memory", 1ull << 20, 4ull << 40)) {
                node.memory_bytes = *bytes;
                node.memory_text = nf.get("memory")->value;
            }
            if (auto set = cpu_list(nf, "hostNodes", "host NUMA nodes")) node.host_nodes = *set;
            nf.finish();
            spec_.numa.nodes.push_back(std::move(node));
        }
    }

    void firmware(const Node& n) {
        Fields f(diags_, n, "firmware");
        f.choice("type", spec_.firmware.type,
                 {{"bios", FirmwareType::bios}, {"uefi", FirmwareType::uefi}});
        if (f.boolean("secureBoot", spec_.firmware.secure_boot) && spec_.firmware.secure_boot &&
            spec_.firmware.type != FirmwareType::uefi)
            diags_.add(*f.get("secureBoot"), "firmware.secureBoot",
                       "needs firmware.type: uefi (SeaBIOS has no secure boot)");
        if (f.string("uuid", spec_.firmware.uuid)) {
            auto& u = spec_.firmware.uuid;
            std::transform(u.begin(), u.end(), u.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            if (!detail::is_uuid(u))
                diags_.add(*f.get("uuid"), "firmware.uuid",
                           "must be a UUID: 32 hex digits as 8-4-4-4-12");
        }
        // Reaches QEMU inside -smbios's option list: the serial charset keeps ',' and '=' out.
        if (f.string("serial", spec_.firmware.serial) &&
            !detail::is_safe_serial(spec_.firmware.serial))
            diags_.add(*f.get("serial"), "firmware.serial",
                       "must be 1 to 20 characters from A-Z a-z 0-9 . _ + : -");
        f.finish();
    }

    void boot(const Node& n) {
        Fields f(diags_, n, "boot");
        path(f, "kernel", spec_.boot.kernel, spec_.boot.kernel_as_written);
        path(f, "initrd", spec_.boot.initrd, spec_.boot.initrd_as_written);
        if (f.string("cmdline", spec_.boot.cmdline)) {
            for (unsigned char c : spec_.boot.cmdline)
                if (c < 0x20 || c == 0x7f) {
                    diags_.add(*f.get("cmdline"), "boot.cmdline",
                               "must not contain control characters");
                    break;
                }
        }
        if (spec_.boot.kernel.empty() &&
            (!spec_.boot.initrd.empty() || !spec_.boot.cmdline.empty()))
            diags_.add(n, "boot.kernel", "is required when initrd or cmdline is set");
        f.finish();
    }

    bool device_name(Fields& f, std::string& out, const std::string& path) {
        f.require("name");
        if (!f.string("name", out)) return false;
        if (!detail::is_dns_label(out) || !std::isalpha(static_cast<unsigned char>(out[0]))) {
            diags_.add(
                *f.get("name"), at(path, "name"),
                "must be a DNS label that starts with a letter (it becomes the QEMU device id)");
            return false;
        }
        return true;
    }

    void disk(const Node& n, const std::string& p) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        Disk d;
        device_name(f, d.name, p);
        if (const Node* b = f.get("backend")) {
            // An external vhost-user-blk server: the image is its business, not QEMU's.
            for (const char* key : {"path", "format", "capacity"})
                if (f.get(key))
                    diags_.add(*f.get(key), at(p, key),
                               "a vhostUser disk's image belongs to its server: give path and "
                               "format, or backend");
            vhost_user_backend(*b, at(p, "backend"), d);
        } else if (const Node* c = f.get("capacity")) {
            // A blank disk: qshim makes (and names) the image.
            for (const char* key : {"path", "format"})
                if (f.get(key))
                    diags_.add(*f.get(key), at(p, key),
                               "a blank disk (capacity) has no image to name: give path and "
                               "format, or capacity");
            if (auto bytes = mebibytes(f, "capacity", 1ull << 20, 64ull << 40)) {
                d.capacity_bytes = *bytes;
                d.capacity_text = c->value;
            }
            d.format = DiskFormat::qcow2;
        } else if (f.get("folder")) {
            // A folder qshim makes into an ISO image at each start.
            for (const char* key : {"path", "format"})
                if (f.get(key))
                    diags_.add(*f.get(key), at(p, key),
                               "a folder disk's image is the one qshim makes of the folder: give "
                               "path and format, or folder");
            path(f, "folder", d.folder, d.folder_as_written);
            if (f.string("volumeLabel", d.volume_label) && !iso_label(d.volume_label))
                diags_.add(*f.get("volumeLabel"), at(p, "volumeLabel"),
                           "must be 1-32 of A-Z a-z 0-9 . _ - (an ISO 9660 volume id)");
        } else if (const Node* device = f.get("device");
                   device && device->value == "cdrom" && !f.get("path") && !f.get("format")) {
            // A cdrom drive with no disc: media come later (POST /v1/vm/disks/NAME/media).
        } else {
            f.require("path");
            path(f, "path", d.path, d.path_as_written);
            f.require("format");
            f.choice("format", d.format, {{"raw", DiskFormat::raw}, {"qcow2", DiskFormat::qcow2}});
        }
        f.choice("bus", d.bus,
                 {{"virtio", DiskBus::virtio}, {"scsi", DiskBus::scsi}, {"sata", DiskBus::sata}});
        if (f.choice("device", d.device,
                     {{"disk", DiskDevice::disk}, {"cdrom", DiskDevice::cdrom}}) &&
            d.device == DiskDevice::cdrom) {
            if (d.bus == DiskBus::virtio)
                diags_.add(*f.get("device"), at(p, "device"),
                           "a cdrom needs bus scsi or sata (virtio-blk has no cdrom)");
            d.read_only = true;
        }
        bool ro = d.read_only;
        const bool ro_given = f.boolean("readOnly", ro);
        if (ro_given) {
            if (!ro && d.device == DiskDevice::cdrom)
                diags_.add(*f.get("readOnly"), at(p, "readOnly"), "a cdrom is always read-only");
            d.read_only = ro || d.device == DiskDevice::cdrom;
        }
        const bool sata_disk = d.bus == DiskBus::sata && d.device == DiskDevice::disk;
        // A folder disk's image is this run's own copy: read-only unless QEMU cannot have that
        // (a sata disk, below), where the guest's writes go to the copy, as KubeVirt's do.
        if (d.from_folder() && !ro_given) d.read_only = !sata_disk;
        // QEMU's ide-hd refuses a read-only node ("Block node is read-only").
        if (ro_given && d.read_only && sata_disk)
            diags_.add(*f.get("readOnly"), at(p, "readOnly"),
                       "a sata disk cannot be read-only (QEMU's ide-hd refuses it): use device "
                       "cdrom, or bus virtio or scsi");
        f.boolean("storageDaemon", d.storage_daemon);
        d.serial = d.name;
        bool serial_given = f.string("serial", d.serial);
        // Without a name (already reported) there is no default serial to complain about; a
        // vhost-user disk has none (vhost_user_checks).
        if ((serial_given || !d.name.empty()) && !d.vhost_user() &&
            !detail::is_safe_serial(d.serial))
            diags_.add(serial_given ? *f.get("serial") : n, at(p, "serial"),
                       serial_given ? "must be 1 to 20 characters from A-Z a-z 0-9 . _ + : -"
                                    : "defaults to the name, which is longer than 20 characters "
                                      "(the virtio-blk limit); set serial explicitly");
        unsigned order = 0;
        if (f.uint("bootOrder", order, 1, 999)) d.boot_order = order;
        unsigned iothread = 0;
        if (f.uint("iothread", iothread, 0, 63)) {
            if (d.bus == DiskBus::sata)
                diags_.add(*f.get("iothread"), at(p, "iothread"),
                           "a sata disk cannot use an IOThread (QEMU's AHCI has none); use bus "
                           "virtio or scsi");
            else
                d.iothread = iothread;
        }
        if (f.boolean("ephemeral", d.ephemeral) && d.ephemeral && d.device == DiskDevice::cdrom)
            diags_.add(*f.get("ephemeral"), at(p, "ephemeral"),
                       "a cdrom is read-only already; ephemeral applies to disks");
        if (d.from_folder() && (d.ephemeral || d.storage_daemon))
            diags_.add(*f.get("folder"), at(p, "folder"),
                       "a folder disk is an image qshim makes for this run: not ephemeral or "
                       "served by a storage daemon");
        if (d.blank() && (d.ephemeral || d.read_only))
            diags_.add(*f.get("capacity"), at(p, "capacity"),
                       d.device == DiskDevice::cdrom
                           ? "a blank cdrom holds nothing; a blank disk is a disk"
                           : fmt::format("a blank disk is already thrown away when the VM ends, "
                                         "and is for writing: not {}",
                                         d.ephemeral ? "ephemeral" : "readOnly"));
        if (d.vhost_user()) vhost_user_checks(f, p, d, serial_given);
        d.pci_address = pci(f, "pciAddress");
        if (d.pci_address && d.bus != DiskBus::virtio)
            diags_.add(
                *f.get("pciAddress"), at(p, "pciAddress"),
                fmt::format("only virtio disks have their own PCI function; a {} disk sits on its "
                            "controller",
                            to_string(d.bus)));
        unsigned lun = 0;
        if (f.uint("lun", lun, 0, max_scsi_luns - 1)) {
            if (d.bus == DiskBus::scsi)
                d.lun = lun;
            else
                diags_.add(
                    *f.get("lun"), at(p, "lun"),
                    fmt::format("only scsi disks have a LUN; a {} disk has {}", to_string(d.bus),
                                d.bus == DiskBus::virtio ? "a PCI function (pciAddress)"
                                                         : "an AHCI port (sataPort)"));
        }
        DiskCache cache = DiskCache::writeback;
        if (f.choice("cache", cache,
                     {{"none", DiskCache::none},
                      {"writethrough", DiskCache::writethrough},
                      {"writeback", DiskCache::writeback}})) {
            if (d.vhost_user() || d.no_medium())
                diags_.add(*f.get("cache"), at(p, "cache"),
                           d.vhost_user() ? "a vhost-user disk's server caches as it likes"
                                          : "an empty drive has no image to cache");
            else
                d.cache = cache;
        }
        unsigned port = 0;
        if (f.uint("sataPort", port, 0, max_sata_ports - 1)) {
            if (d.bus == DiskBus::sata)
                d.sata_port = port;
            else
                diags_.add(
                    *f.get("sataPort"), at(p, "sataPort"),
                    fmt::format(
                        "only sata disks sit on an AHCI port; a {} disk has {}", to_string(d.bus),
                        d.bus == DiskBus::virtio ? "a PCI function (pciAddress)" : "a LUN (lun)"));
        }
        f.finish();
        spec_.disks.push_back(std::move(d));
        disk_nodes_.push_back(&n);
    }

    void vhost_user_backend(const Node& n, const std::string& p, Disk& d) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        f.require("type");
        std::string type;
        if (f.string("type", type) && type != "vhostUser")
            diags_.add(*f.get("type"), at(p, "type"),
                       "must be vhostUser (a disk without backend is an image QEMU opens)");
        f.require("socket");
        path(f, "socket", d.vhost_user_socket, d.vhost_user_socket_as_written);
        f.finish();
    }

    // What a disk served over vhost-user-blk cannot have: QEMU only relays its queues.
    void vhost_user_checks(Fields& f, const std::string& p, Disk& d, bool serial_given) {
        const char* what = d.storage_daemon ? "a storageDaemon disk" : "a vhostUser disk";
        auto refuse = [&](const char* key, const std::string& why) {
            if (const Node* n = f.get(key)) diags_.add(*n, at(p, key), why);
        };
        if (d.storage_daemon && !d.vhost_user_socket.empty())
            refuse("storageDaemon",
                   "the storage daemon is the vhost-user server qshim runs for path; backend "
                   "names another one: choose one");
        if (d.bus != DiskBus::virtio)
            refuse("bus", fmt::format("{} is a vhost-user-blk device, a virtio disk", what));
        if (serial_given)
            refuse("serial", fmt::format("{}'s serial is answered by its vhost-user-blk server; "
                                         "QEMU cannot set it",
                                         what));
        d.serial.clear();
        if (d.iothread)
            refuse("iothread",
                   fmt::format("{} does its I/O in its server, not in a QEMU IOThread", what));
        d.iothread.reset();
        if (d.ephemeral)
            refuse("ephemeral", fmt::format("{} cannot be ephemeral (the overlay would be "
                                            "QEMU's, and QEMU does not open this disk)",
                                            what));
        if (d.blank())
            refuse("capacity", "a storageDaemon disk exports an image: give path and format");
        if (!d.vhost_user_socket.empty() && d.read_only)
            refuse("readOnly",
                   "a vhostUser disk is read-only if its server says so; QEMU cannot make it");
    }

    void interface(const Node& n, const std::string& p) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        Interface i;
        device_name(f, i.name, p);
        f.choice("model", i.model,
                 {{"virtio", NicModel::virtio},
                  {"e1000e", NicModel::e1000e},
                  {"e1000", NicModel::e1000}});
        std::string mac;
        if (f.string("mac", mac)) {
            auto m = detail::parse_mac(mac);
            if (!m)
                diags_.add(*f.get("mac"), at(p, "mac"),
                           "must be six hex bytes separated by ':' (52:54:00:12:34:56)");
            else if ((*m)[0] & 1)
                diags_.add(*f.get("mac"), at(p, "mac"),
                           "is a multicast address; a NIC needs a unicast one");
            else {
                i.mac = *m;
                i.mac_explicit = true;
            }
        }
        if (!i.mac_explicit) i.mac = default_mac(spec_.name, i.name);
        f.require("backend");
        if (auto* b = f.get("backend"); b && expect(*b, Node::Kind::map, at(p, "backend")))
            backend(*b, at(p, "backend"), i.backend);
        unsigned order = 0;
        if (f.uint("bootOrder", order, 1, 999)) i.boot_order = order;
        i.pci_address = pci(f, "pciAddress");
        f.finish();
        spec_.interfaces.push_back(std::move(i));
        interface_nodes_.push_back(&n);
    }

    void backend(const Node& n, const std::string& p, Backend& b) {
        Fields f(diags_, n, p);
        f.require("type");
        bool typed = f.choice("type", b.type,
                              {{"user", BackendType::user},
                               {"tap", BackendType::tap},
                               {"stream", BackendType::stream},
                               {"passt", BackendType::passt}});
        bool has_name = f.string("name", b.tap_name);
        if (has_name && !detail::is_ifname(b.tap_name))
            diags_.add(*f.get("name"), at(p, "name"),
                       "must be a host interface name (1 to 15 of A-Z a-z 0-9 _ . -)");
        unsigned fd = 0;
        if (f.uint("fd", fd, 3, 65535)) b.tap_fd = static_cast<int>(fd);
        bool has_socket = path(f, "socket", b.socket, b.socket_as_written);
        const Node* forwards = f.get("portForwards");
        if (forwards && expect(*forwards, Node::Kind::sequence, at(p, "portForwards")))
            for (size_t i = 0; i < forwards->items.size(); ++i)
                port_forward(forwards->items[i], fmt::format("{}.portForwards[{}]", p, i), b);
        bool has_restrict = f.boolean("restrict", b.restricted);
        f.finish();
        if (!typed) return;  // reported already; judging the rest as type user would only add noise
        if (b.type != BackendType::user) {
            if (forwards && b.type != BackendType::passt)
                diags_.add(*forwards, at(p, "portForwards"),
                           "applies to types user and passt only");
            if (has_restrict)
                diags_.add(*f.get("restrict"), at(p, "restrict"), "applies to type user only");
        }
        switch (b.type) {
            case BackendType::user:
                if (has_name || b.tap_fd || has_socket)
                    diags_.add(n, p, "type user takes no name, fd or socket");
                break;
            case BackendType::tap:
                if (has_name == b.tap_fd.has_value())
                    diags_.add(n, p, "type tap needs exactly one of name or fd");
                if (has_socket)
                    diags_.add(*f.get("socket"), at(p, "socket"), "applies to type stream only");
                break;
            case BackendType::stream:
                if (!has_socket) diags_.add(n, at(p, "socket"), "is required for type stream");
                if (has_name || b.tap_fd) diags_.add(n, p, "type stream takes no name or fd");
                break;
            case BackendType::passt:
                // qshim runs passt and makes its socket (docs/helpers.md).
                if (has_name || b.tap_fd || has_socket)
                    diags_.add(n, p, "type passt takes no name, fd or socket: qshim runs passt");
                break;
        }
    }

    void port_forward(const Node& n, const std::string& p, Backend& b) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        PortForward fwd;
        f.require("hostPort");
        f.require("guestPort");
        unsigned host = 0, guest = 0;
        // Port 0 would let the kernel pick one nobody knows: a forward needs a fixed port.
        bool ok = f.uint("hostPort", host, 1, 65535) & f.uint("guestPort", guest, 1, 65535);
        f.choice("protocol", fwd.protocol, {{"tcp", Protocol::tcp}, {"udp", Protocol::udp}});
        if (f.string("hostAddress", fwd.host_address) && !detail::is_ipv4(fwd.host_address))
            diags_.add(*f.get("hostAddress"), at(p, "hostAddress"),
                       "must be an IPv4 address such as 127.0.0.1 (0.0.0.0: every address)");
        f.finish();
        if (!ok) return;
        fwd.host_port = static_cast<uint16_t>(host);
        fwd.guest_port = static_cast<uint16_t>(guest);
        b.port_forwards.push_back(std::move(fwd));
        forward_nodes_.push_back({&n, p});
    }

    void filesystem(const Node& n, const std::string& p) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        Filesystem fs;
        device_name(f, fs.name, p);
        f.require("path");
        path(f, "path", fs.path, fs.path_as_written);
        fs.tag = fs.name;
        if (f.string("tag", fs.tag)) {
            // The guest names it on its mount command line: printable, no spaces or commas.
            bool plain = !fs.tag.empty() && std::all_of(fs.tag.begin(), fs.tag.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                       c == '.';
            });
            if (!plain)
                diags_.add(*f.get("tag"), at(p, "tag"),
                           "must be 1 or more of A-Z a-z 0-9 - _ . (the guest mounts it by this "
                           "name)");
            else if (fs.tag.size() > max_filesystem_tag)
                diags_.add(*f.get("tag"), at(p, "tag"),
                           fmt::format("is {} bytes long; virtio-fs takes at most {}",
                                       fs.tag.size(), max_filesystem_tag));
        } else if (fs.tag.size() > max_filesystem_tag) {
            diags_.add(n, at(p, "tag"),
                       fmt::format("defaults to the name, which is longer than the {} bytes "
                                   "virtio-fs takes; set tag explicitly",
                                   max_filesystem_tag));
        }
        f.boolean("readOnly", fs.read_only);
        f.finish();
        spec_.filesystems.push_back(std::move(fs));
        filesystem_nodes_.push_back(&n);
    }

    void host_device(const Node& n, const std::string& p) {
        if (!expect(n, Node::Kind::map, p)) return;
        Fields f(diags_, n, p);
        HostDevice h;
        device_name(f, h.name, p);
        f.require("hostAddress");
        if (auto a = pci(f, "hostAddress")) h.host_address = *a;
        h.pci_address = pci(f, "pciAddress");
        f.finish();
        spec_.host_devices.push_back(std::move(h));
        host_device_nodes_.push_back(&n);
    }

    void hotplug(const Node& n) {
        Fields f(diags_, n, "hotplug");
        f.uint("disks", spec_.hotplug.disks, 0, 64);
        f.uint("interfaces", spec_.hotplug.interfaces, 0, 32);
        f.boolean("scsi", spec_.hotplug.scsi);
        f.finish();
    }

    void devices(const Node& n) {
        Fields f(diags_, n, "devices");
        f.boolean("balloon", spec_.devices.balloon);
        f.boolean("rng", spec_.devices.rng);
        path(f, "guestAgent", spec_.devices.guest_agent, spec_.devices.guest_agent_as_written);
        if (auto* a = f.get("pciAddresses");
            a && expect(*a, Node::Kind::map, "devices.pciAddresses")) {
            Fields af(diags_, *a, "devices.pciAddresses");
            auto& pins = spec_.devices.pci_addresses;
            pins.rng = pci(af, "rng");
            pins.balloon = pci(af, "balloon");
            pins.scsi = pci(af, "scsi");
            pins.virtio_serial = pci(af, "virtioSerial");
            pins.cloud_init = pci(af, "cloudInit");
            af.finish();
        }
        f.finish();
    }

    void serial(const Node& n) {
        Fields f(diags_, n, "serial");
        path(f, "log", spec_.serial.log, spec_.serial.log_as_written);
        path(f, "socket", spec_.serial.socket, spec_.serial.socket_as_written);
        f.finish();
    }

    void lifecycle(const Node& n) {
        Fields f(diags_, n, "lifecycle");
        f.uint("gracePeriodSeconds", spec_.lifecycle.grace_period_seconds, 0, 3600);
        f.finish();
    }

    void security(const Node& n) {
        Fields f(diags_, n, "security");
        if (auto* r = f.get("runAs"); r && expect(*r, Node::Kind::map, "security.runAs")) {
            Fields ids(diags_, *r, "security.runAs");
            ids.require("uid");
            ids.require("gid");
            // 4294967295 is (uid_t)-1, which setresuid reads as "leave unchanged".
            RunAs run_as;
            bool uid = ids.uint("uid", run_as.uid, 0, 4294967294u);
            bool gid = ids.uint("gid", run_as.gid, 0, 4294967294u);
            if (uid && run_as.uid == 0)
                diags_.add(*ids.get("uid"), "security.runAs.uid",
                           "must not be 0: QEMU never runs as root (a guest that takes QEMU over "
                           "would own the host); use an unprivileged uid such as 107");
            if (gid && run_as.gid == 0)
                diags_.add(*ids.get("gid"), "security.runAs.gid",
                           "must not be 0: the root group can write much of the host; use an "
                           "unprivileged gid such as 107");
            if (uid && gid) spec_.security.run_as = run_as;
            ids.finish();
        }
        f.choice("seccomp", spec_.security.seccomp,
                 {{"enforce", SeccompMode::enforce},
                  {"kill", SeccompMode::kill},
                  {"log", SeccompMode::log},
                  {"off", SeccompMode::off}});
        f.finish();
    }

    // Rules that span several fields; each names both places involved.
    void cross_checks() {
        std::map<std::string, std::string> names;  // device name -> where first declared
        std::map<unsigned, std::string> boot_orders;
        std::map<std::string, std::string> serials;
        std::map<MacAddress, std::string> macs;
        std::map<unsigned, std::string> luns, sata_ports;
        // `p` ends in the field's key; report at that field, or at its item when it is a default.
        auto unique = [this](auto& seen, const auto& key, const Node& item, const std::string& p,
                             const std::string& what) {
            auto [it, inserted] = seen.emplace(key, p);
            if (inserted) return;
            const Node* field = item.find(std::string_view(p).substr(p.rfind('.') + 1));
            diags_.add(field ? *field : item, p,
                       fmt::format("{} is also used by {}", what, it->second));
        };
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const Disk& d = spec_.disks[i];
            const Node& at = *disk_nodes_[i];
            std::string p = fmt::format("disks[{}]", i);
            if (!d.name.empty()) unique(names, d.name, at, p + ".name", "name '" + d.name + "'");
            if (d.boot_order)
                unique(boot_orders, *d.boot_order, at, p + ".bootOrder",
                       fmt::format("bootOrder {}", *d.boot_order));
            if (!d.serial.empty())
                unique(serials, d.serial, at, p + ".serial", "serial '" + d.serial + "'");
            if (d.lun) unique(luns, *d.lun, at, p + ".lun", fmt::format("LUN {}", *d.lun));
            if (d.sata_port)
                unique(sata_ports, *d.sata_port, at, p + ".sataPort",
                       fmt::format("SATA port {}", *d.sata_port));
        }
        for (size_t i = 0; i < spec_.interfaces.size(); ++i) {
            const Interface& n = spec_.interfaces[i];
            const Node& at = *interface_nodes_[i];
            std::string p = fmt::format("interfaces[{}]", i);
            if (!n.name.empty()) unique(names, n.name, at, p + ".name", "name '" + n.name + "'");
            if (n.boot_order)
                unique(boot_orders, *n.boot_order, at, p + ".bootOrder",
                       fmt::format("bootOrder {}", *n.boot_order));
            unique(macs, n.mac, at, p + ".mac",
                   "MAC " + to_string(n.mac) +
                       (n.mac_explicit ? "" : " (derived from the names; set mac explicitly)"));
        }
        for (size_t i = 0; i < spec_.host_devices.size(); ++i) {
            const HostDevice& h = spec_.host_devices[i];
            if (!h.name.empty())
                unique(names, h.name, *host_device_nodes_[i],
                       fmt::format("hostDevices[{}].name", i), "name '" + h.name + "'");
        }
        std::map<std::string, std::string> tags;
        for (size_t i = 0; i < spec_.filesystems.size(); ++i) {
            const Filesystem& fs = spec_.filesystems[i];
            const Node& at = *filesystem_nodes_[i];
            std::string p = fmt::format("filesystems[{}]", i);
            if (!fs.name.empty()) unique(names, fs.name, at, p + ".name", "name '" + fs.name + "'");
            if (!fs.tag.empty()) unique(tags, fs.tag, at, p + ".tag", "tag '" + fs.tag + "'");
        }
        iothread_checks();
        numa_checks();
        forward_checks();
    }

    // Two forwards of one host port and protocol cannot both bind it (0.0.0.0 covers every
    // address), whichever interfaces they are on.
    void forward_checks() {
        std::vector<std::pair<const PortForward*, std::string>> seen;
        size_t k = 0;
        for (const auto& i : spec_.interfaces)
            for (const auto& fwd : i.backend.port_forwards) {
                const auto& [node, p] = forward_nodes_[k++];
                for (const auto& [other, other_path] : seen)
                    if (other->host_port == fwd.host_port && other->protocol == fwd.protocol &&
                        (other->host_address == fwd.host_address ||
                         other->host_address == "0.0.0.0" || fwd.host_address == "0.0.0.0")) {
                        const Node* field = node->find("hostPort");
                        diags_.add(field ? *field : *node, p + ".hostPort",
                                   fmt::format("{} port {} is also forwarded by {}",
                                               to_string(fwd.protocol), fwd.host_port, other_path));
                        break;
                    }
                seen.emplace_back(&fwd, p);
            }
    }

    void iothread_checks() {
        std::optional<std::pair<unsigned, std::string>> scsi;  // the SCSI controller's IOThread
        for (size_t i = 0; i < spec_.disks.size(); ++i) {
            const Disk& d = spec_.disks[i];
            if (!d.iothread) continue;
            const Node& at = *disk_nodes_[i];
            std::string p = fmt::format("disks[{}].iothread", i);
            const Node* field = at.find("iothread");
            if (*d.iothread >= spec_.iothreads) {
                diags_.add(field ? *field : at, p,
                           fmt::format("IOThread {} does not exist: the spec has iothreads: {}",
                                       *d.iothread, spec_.iothreads));
                continue;
            }
            if (d.bus != DiskBus::scsi) continue;
            // Every scsi disk sits on the one virtio-scsi controller: it has one IOThread.
            if (!scsi)
                scsi.emplace(*d.iothread, p);
            else if (scsi->first != *d.iothread)
                diags_.add(field ? *field : at, p,
                           fmt::format("scsi disks share one controller, which {} puts on "
                                       "IOThread {}",
                                       scsi->second, scsi->first));
        }
        if (spec_.cpu.pinning && !spec_.cpu.pinning->iothreads.empty() && spec_.iothreads == 0)
            diags_.add(cpu_node_ ? *cpu_node_ : *root_, "cpu.pinning.iothreads",
                       "names CPUs for IOThreads, but the spec has iothreads: 0");
    }

    void numa_checks() {
        const uint64_t page = spec_.memory.hugepage_bytes;
        if (page && spec_.memory.size_bytes % page != 0)
            diags_.add(*root_, "memory.size",
                       fmt::format("{} is not a whole number of {} huge pages",
                                   spec_.memory.size_text, page == (2u << 20) ? "2Mi" : "1Gi"));
        if (!numa_node_) return;
        const Node& at = *numa_node_;
        if (spec_.numa.automatic) {
            if (!spec_.cpu.pinned())
                diags_.add(at, "numa.guestNodes",
                           "auto mirrors the host NUMA nodes of the vCPUs' CPUs, so it needs "
                           "cpu.dedicated or cpu.pinning");
            return;
        }
        std::map<unsigned, size_t> owner;  // vCPU -> node
        uint64_t total = 0;
        for (size_t i = 0; i < spec_.numa.nodes.size(); ++i) {
            const NumaNode& node = spec_.numa.nodes[i];
            std::string p = fmt::format("numa.guestNodes[{}]", i);
            total += node.memory_bytes;
            if (page && node.memory_bytes % page != 0)
                diags_.add(at.items[i], p + ".memory",
                           fmt::format("{} is not a whole number of huge pages", node.memory_text));
            for (unsigned v : node.vcpus) {
                if (v >= spec_.cpu.count())
                    diags_.add(at.items[i], p + ".vcpus",
                               fmt::format("vCPU {} does not exist: the VM has {} (0-{})", v,
                                           spec_.cpu.count(), spec_.cpu.count() - 1));
                else if (auto [it, fresh] = owner.emplace(v, i); !fresh)
                    diags_.add(
                        at.items[i], p + ".vcpus",
                        fmt::format("vCPU {} is also in numa.guestNodes[{}]", v, it->second));
            }
        }
        if (owner.size() < spec_.cpu.count()) {
            HostSet missing;
            for (unsigned v = 0; v < spec_.cpu.count(); ++v)
                if (!owner.count(v)) missing.insert(v);
            diags_.add(at, "numa.guestNodes",
                       fmt::format("vCPUs {} are in no node; every vCPU must be in one",
                                   qshim::detail::to_cpu_list(missing)));
        }
        if (total != spec_.memory.size_bytes)
            diags_.add(at, "numa.guestNodes",
                       fmt::format("the nodes' memory adds up to {} MiB, but memory.size is {} "
                                   "MiB; they must be equal",
                                   total >> 20, spec_.memory.size_bytes >> 20));
    }

    Diagnostics& diags_;
    VmSpec& spec_;
    std::vector<const Node*> disk_nodes_, interface_nodes_, host_device_nodes_, filesystem_nodes_;
    std::vector<std::pair<const Node*, std::string>> forward_nodes_;  // in spec order
    const Node* root_ = nullptr;
    const Node* cpu_node_ = nullptr;
    const Node* numa_node_ = nullptr;  // numa.guestNodes
};

bool looks_like_json(std::string_view text, const std::string& filename) {
    auto ext = fs::path(filename).extension().string();
    if (ext == ".json") return true;
    if (ext == ".yaml" || ext == ".yml") return false;
    auto first = text.find_first_not_of(" \t\r\n");
    return first != std::string_view::npos && text[first] == '{';
}

}  // namespace

Result<VmSpec> parse_spec(std::string_view text, const std::string& filename,
                          const LoadOptions& options) {
    const std::string context = "loading spec " + filename;
    if (text.size() > max_spec_bytes) {
        Error e = make_error(Errc::invalid_spec,
                             fmt::format("file is {} bytes; a spec may be at most {} bytes",
                                         text.size(), max_spec_bytes),
                             context);
        e.diagnostics.push_back({filename, 0, 0, "", e.message});
        return e;
    }
    bool json = options.format == Format::json ||
                (options.format == Format::automatic && looks_like_json(text, filename));
    auto doc = json ? detail::parse_json_document(text, filename)
                    : detail::parse_yaml_document(text, filename);
    if (!doc) return std::move(doc).error();

    VmSpec spec;
    spec.source_file = filename;
    // Text without a file name resolves against the working directory. The error_code overload:
    // an unknown working directory leaves relative paths relative rather than throwing.
    std::error_code ec;
    spec.base_dir = fs::absolute(filename.empty() ? fs::path(".") : fs::path(filename), ec)
                        .parent_path()
                        .lexically_normal()
                        .string();
    Diagnostics diags(filename);
    std::optional<detail::Converted> converted;
    const bool manifest = detail::is_manifest(*doc);
    std::optional<detail::Domain> domain;
    if (!options.pin_from.empty()) {
        if (!manifest)
            return make_error(Errc::invalid_spec,
                              "pinning addresses from a libvirt domain takes a KubeVirt "
                              "manifest; a spec pins them with pciAddress",
                              context);
        auto read = detail::read_domain_xml(options.pin_from);
        if (!read) return std::move(read).error();
        domain = std::move(*read);
    }
    if (manifest) {
        // A KubeVirt manifest: converted to a spec, whose problems are then the manifest's.
        converted = detail::convert_manifest(diags, *doc, options.volume_roots,
                                             domain ? &*domain : nullptr, options.notes);
        if (converted) {
            SpecReader(diags, spec).read(converted->spec);
            spec.origins = converted->origins;
        }
    } else {
        SpecReader(diags, spec).read(*doc);
    }
    if (!diags.empty()) {
        Error e = make_error(Errc::invalid_spec,
                             manifest ? "the manifest is invalid" : "the spec is invalid", context);
        e.diagnostics = diags.take();
        if (converted)
            for (auto& d : e.diagnostics) d.path = detail::manifest_path(*converted, d.path);
        // The reader visits fields in schema order and checks cross-field rules last; users read
        // the list top to bottom alongside the file.
        std::stable_sort(e.diagnostics.begin(), e.diagnostics.end(),
                         [](const Diagnostic& a, const Diagnostic& b) {
                             return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                         });
        e.message = fmt::format("the {} has {} problem{}", manifest ? "manifest" : "spec",
                                e.diagnostics.size(), e.diagnostics.size() == 1 ? "" : "s");
        return e;
    }
    return spec;
}

namespace {

// Reads one device object (a request body) with the loader's own rules and messages.
template <typename Device, typename Read>
Result<Device> parse_device(std::string_view json, const VmSpec& vm, const char* what, Read read) {
    const std::string file = "request body";
    auto doc = detail::parse_json_document(json, file);
    if (!doc) return std::move(doc).error();
    VmSpec scratch;
    scratch.name = vm.name;
    scratch.base_dir = vm.base_dir;
    scratch.iothreads = vm.iothreads;
    Diagnostics diags(file);
    SpecReader reader(diags, scratch);
    read(reader, *doc);
    if (!diags.empty()) {
        Error e = make_error(Errc::invalid_spec, fmt::format("the {} is invalid", what),
                             "reading the request body");
        e.diagnostics = diags.take();
        return e;
    }
    if constexpr (std::is_same_v<Device, Disk>)
        return std::move(scratch.disks.at(0));
    else
        return std::move(scratch.interfaces.at(0));
}

}  // namespace

Result<Disk> parse_disk(std::string_view json, const VmSpec& vm) {
    return parse_device<Disk>(json, vm, "disk",
                              [](SpecReader& r, const Node& n) { r.read_disk(n); });
}

Result<Interface> parse_interface(std::string_view json, const VmSpec& vm) {
    return parse_device<Interface>(json, vm, "interface",
                                   [](SpecReader& r, const Node& n) { r.read_interface(n); });
}

std::string source_path(const VmSpec& spec, const std::string& spec_path) {
    return detail::manifest_path(detail::Converted{{}, spec.origins}, spec_path);
}

bool is_kubevirt_manifest(std::string_view text) {
    if (text.size() > max_spec_bytes) return false;
    auto doc = looks_like_json(text, "") ? detail::parse_json_document(text, "")
                                         : detail::parse_yaml_document(text, "");
    return doc && detail::is_manifest(*doc);
}

Result<VmSpec> load_spec(const std::string& path, const LoadOptions& options) {
    const std::string context = "loading spec " + path;
    std::error_code ec;
    auto status = fs::status(path, ec);
    if (ec || !fs::exists(status))
        return make_error(Errc::io,
                          "cannot read the file: " +
                              (ec ? ec.message() : std::string("No such file or directory")),
                          context);
    if (!fs::is_regular_file(status)) return make_error(Errc::io, "not a regular file", context);
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(Errc::io, "cannot open the file for reading", context);
    // Read in chunks up to one byte past the limit: sizing the buffer to the limit up front
    // cleared (and faulted in) a megabyte for every spec, most of a CLI start's spec loading.
    std::string text;
    char chunk[16 * 1024];
    while (text.size() <= max_spec_bytes && in.read(chunk, sizeof chunk).gcount() > 0)
        text.append(chunk, static_cast<size_t>(in.gcount()));
    if (in.bad()) return make_error(Errc::io, "read failed", context);
    if (text.size() > max_spec_bytes) {
        Error e = make_error(
            Errc::invalid_spec,
            fmt::format("file is larger than {} bytes, the most a spec may be", max_spec_bytes),
            context);
        e.diagnostics.push_back({path, 0, 0, "", e.message});
        return e;
    }
    return parse_spec(text, path, options);
}

}  // namespace qshim::spec
