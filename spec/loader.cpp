// load_spec/parse_spec: a positioned document to a validated VmSpec, reporting every problem.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <qshim/spec.hpp>
#include <set>

#include "spec/decoder.hpp"
#include "spec/document.hpp"
#include "spec/values.hpp"

namespace qshim::spec {

using detail::Diagnostics;
using detail::Fields;
using detail::Node;

namespace {

namespace fs = std::filesystem;

class SpecReader {
  public:
    SpecReader(Diagnostics& diags, VmSpec& spec) : diags_(diags), spec_(spec) {}

    void read(const Node& root) {
        Fields f(diags_, root, "");
        f.require("name");
        if (f.string("name", spec_.name) && !detail::is_dns_label(spec_.name))
            diags_.add(
                *root.find("name"), "name",
                "must be a DNS label: lowercase letters, digits and '-', at most 63 characters");
        if (auto* n = f.get("machine"); n && expect(*n, Node::Kind::map, "machine")) machine(*n);
        if (auto* n = f.get("cpu"); n && expect(*n, Node::Kind::map, "cpu")) cpu(*n);
        if (auto* n = f.get("memory"); n && expect(*n, Node::Kind::map, "memory")) memory(*n);
        if (auto* n = f.get("boot"); n && expect(*n, Node::Kind::map, "boot")) boot(*n);
        if (auto* n = f.get("disks"); n && expect(*n, Node::Kind::sequence, "disks"))
            for (size_t i = 0; i < n->items.size(); ++i)
                disk(n->items[i], fmt::format("disks[{}]", i));
        if (auto* n = f.get("interfaces"); n && expect(*n, Node::Kind::sequence, "interfaces"))
            for (size_t i = 0; i < n->items.size(); ++i)
                interface(n->items[i], fmt::format("interfaces[{}]", i));
        if (auto* n = f.get("hostDevices"); n && expect(*n, Node::Kind::sequence, "hostDevices"))
            for (size_t i = 0; i < n->items.size(); ++i)
                host_device(n->items[i], fmt::format("hostDevices[{}]", i));
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
    void read_disk(const Node& root) { disk(root, ""); }
    void read_interface(const Node& root) { interface(root, ""); }

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
        f.finish();
    }

    void memory(const Node& n) {
        Fields f(diags_, n, "memory");
        f.require("size");
        if (const Node* s = f.get("size")) {
            auto bytes =
                s->kind == Node::Kind::scalar ? detail::parse_quantity(s->value) : std::nullopt;
            if (!bytes)
                diags_.add(*s, "memory.size",
                           "must be a size such as 512Mi or 4Gi (suffix Ki, Mi, Gi or Ti)");
            else if (*bytes % (1u << 20) != 0)
                diags_.add(*s, "memory.size", "must be a whole number of MiB");
            else if (*bytes < (16ull << 20) || *bytes > (4ull << 40))
                diags_.add(*s, "memory.size", "must be from 16Mi to 4Ti");
            else {
                spec_.memory.size_bytes = *bytes;
                spec_.memory.size_text = s->value;
            }
        }
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
        f.require("path");
        path(f, "path", d.path, d.path_as_written);
        f.require("format");
        f.choice("format", d.format, {{"raw", DiskFormat::raw}, {"qcow2", DiskFormat::qcow2}});
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
        if (f.boolean("readOnly", ro)) {
            if (!ro && d.device == DiskDevice::cdrom)
                diags_.add(*f.get("readOnly"), at(p, "readOnly"), "a cdrom is always read-only");
            d.read_only = ro || d.device == DiskDevice::cdrom;
        }
        d.serial = d.name;
        bool serial_given = f.string("serial", d.serial);
        // Without a name (already reported) there is no default serial to complain about.
        if ((serial_given || !d.name.empty()) && !detail::is_safe_serial(d.serial))
            diags_.add(serial_given ? *f.get("serial") : n, at(p, "serial"),
                       serial_given ? "must be 1 to 20 characters from A-Z a-z 0-9 . _ + : -"
                                    : "defaults to the name, which is longer than 20 characters "
                                      "(the virtio-blk limit); set serial explicitly");
        unsigned order = 0;
        if (f.uint("bootOrder", order, 1, 999)) d.boot_order = order;
        d.pci_address = pci(f, "pciAddress");
        if (d.pci_address && d.bus != DiskBus::virtio)
            diags_.add(
                *f.get("pciAddress"), at(p, "pciAddress"),
                fmt::format("only virtio disks have their own PCI function; a {} disk sits on its "
                            "controller",
                            to_string(d.bus)));
        f.finish();
        spec_.disks.push_back(std::move(d));
        disk_nodes_.push_back(&n);
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
                               {"stream", BackendType::stream}});
        bool has_name = f.string("name", b.tap_name);
        if (has_name && !detail::is_ifname(b.tap_name))
            diags_.add(*f.get("name"), at(p, "name"),
                       "must be a host interface name (1 to 15 of A-Z a-z 0-9 _ . -)");
        unsigned fd = 0;
        if (f.uint("fd", fd, 3, 65535)) b.tap_fd = static_cast<int>(fd);
        bool has_socket = path(f, "socket", b.socket, b.socket_as_written);
        f.finish();
        if (!typed) return;  // reported already; judging the rest as type user would only add noise
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
        }
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
        f.finish();
    }

    void devices(const Node& n) {
        Fields f(diags_, n, "devices");
        f.boolean("balloon", spec_.devices.balloon);
        f.boolean("rng", spec_.devices.rng);
        path(f, "guestAgent", spec_.devices.guest_agent, spec_.devices.guest_agent_as_written);
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
    }

    Diagnostics& diags_;
    VmSpec& spec_;
    std::vector<const Node*> disk_nodes_, interface_nodes_, host_device_nodes_;
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
    SpecReader(diags, spec).read(*doc);
    if (!diags.empty()) {
        Error e = make_error(Errc::invalid_spec, "the spec is invalid", context);
        e.diagnostics = diags.take();
        // The reader visits fields in schema order and checks cross-field rules last; users read
        // the list top to bottom alongside the file.
        std::stable_sort(e.diagnostics.begin(), e.diagnostics.end(),
                         [](const Diagnostic& a, const Diagnostic& b) {
                             return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                         });
        e.message = fmt::format("the spec has {} problem{}", e.diagnostics.size(),
                                e.diagnostics.size() == 1 ? "" : "s");
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
