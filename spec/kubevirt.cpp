// KubeVirt manifests: the document (kind, metadata, VirtualMachine's template), the domain's CPU,
// memory and firmware. Devices and volumes are in kubevirt_devices.cpp.
#include "spec/kubevirt.hpp"

#include <fmt/format.h>

#include <charconv>
#include <filesystem>

#include "spec/kubevirt_converter.hpp"

namespace qshim::spec::detail {

namespace kubevirt {

Node text(std::string value, const Node& at) {
    Node n;
    n.kind = Node::Kind::scalar;
    n.value = std::move(value);
    n.quoted = true;
    n.line = at.line;
    n.column = at.column;
    return n;
}

Node number(uint64_t value, const Node& at) {
    Node n = text(std::to_string(value), at);
    n.quoted = false;
    return n;
}

Node boolean(bool value, const Node& at) {
    Node n = text(value ? "true" : "false", at);
    n.quoted = false;
    return n;
}

Node map(const Node& at) {
    Node n;
    n.kind = Node::Kind::map;
    n.line = at.line;
    n.column = at.column;
    return n;
}

Node sequence(const Node& at) {
    Node n = map(at);
    n.kind = Node::Kind::sequence;
    return n;
}

void put(Node& map, std::string key, Node value) {
    Node k = text(std::move(key), value);
    map.entries.push_back({std::move(k), std::move(value)});
}

std::optional<uint64_t> parse_quantity(std::string_view s) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end == s.data()) return std::nullopt;
    std::string_view suffix(end, static_cast<size_t>(s.data() + s.size() - end));
    static const std::pair<std::string_view, uint64_t> units[] = {
        {"", 1},
        {"Ki", 1ull << 10},
        {"Mi", 1ull << 20},
        {"Gi", 1ull << 30},
        {"Ti", 1ull << 40},
        {"k", 1000},
        {"M", 1000'000},
        {"G", 1000'000'000},
        {"T", 1000'000'000'000},
    };
    for (const auto& [name, factor] : units)
        if (suffix == name) {
            if (n > UINT64_MAX / factor) return std::nullopt;
            return n * factor;
        }
    return std::nullopt;
}

namespace {

// KubeVirt serves both versions from the same types: v1alpha3 is v1 under its old name.
bool known_version(std::string_view api) {
    return api == "kubevirt.io/v1" || api == "kubevirt.io/v1alpha3";
}

// Fields of the VM's object that belong to the cluster (scheduling, placement on nodes): they
// change where the pod runs, never what the VM is.
constexpr const char* scheduling_fields[] = {
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulerName",
    "priorityClassName",
    "evictionStrategy",
    "topologySpreadConstraints",
};

}  // namespace

std::optional<Converted> Converter::run(const Node& root) {
    root_ = &root;
    out_.spec = map(root);
    disks_ = sequence(root);
    interfaces_ = sequence(root);
    filesystems_ = sequence(root);
    Fields f(diags_, root, "");
    f.require("apiVersion");
    f.require("kind");
    std::string api, kind;
    f.string("apiVersion", api);
    f.string("kind", kind);
    const Node* metadata = f.get("metadata");
    f.get("status");  // `kubectl get -o yaml` carries the cluster's view of the VM along
    const Node* spec = f.get("spec");
    f.finish(unsupported);
    if (!api.empty() && !known_version(api)) {
        diags_.add(*root.find("apiVersion"), "apiVersion",
                   api.starts_with("kubevirt.io/")
                       ? fmt::format("{} is not a version qshim reads: kubevirt.io/v1 (or "
                                     "v1alpha3, the same schema)",
                                     api)
                       : fmt::format("{} is not KubeVirt's: qshim runs kubevirt.io/v1 "
                                     "VirtualMachineInstance and VirtualMachine manifests",
                                     api));
        return std::nullopt;
    }
    if (!kind.empty() && kind != "VirtualMachineInstance" && kind != "VirtualMachine") {
        diags_.add(*root.find("kind"), "kind",
                   fmt::format("a {} is not a VM: qshim runs a VirtualMachineInstance, or a "
                               "VirtualMachine's template",
                               kind));
        return std::nullopt;
    }
    if (!diags_.empty()) return std::nullopt;

    if (!metadata) {
        diags_.add(root, "metadata", "required field is missing: the VM's name is metadata.name");
    } else if (expect(*metadata, Node::Kind::map, "metadata")) {
        Fields m(diags_, *metadata, "metadata");
        m.require("name");
        if (const Node* name = m.get("name")) {
            put(out_.spec, "name", *name);
            origin("name", "metadata.name");
        }
        // The rest (namespace, labels, annotations, uid, ...) is the cluster's bookkeeping.
        for (const auto& e : metadata->entries) m.get(e.key.value);
    }
    if (!spec)
        diags_.add(root, "spec", "required field is missing");
    else if (expect(*spec, Node::Kind::map, "spec"))
        kind == "VirtualMachine" ? vm_spec(*spec, "spec") : vmi_spec(*spec, "spec");
    if (!diags_.empty()) return std::nullopt;
    if (domain_) {
        pin_from();
        if (!diags_.empty()) return std::nullopt;
    }

    put(out_.spec, "disks", std::move(disks_));
    put(out_.spec, "interfaces", std::move(interfaces_));
    if (!filesystems_.items.empty()) put(out_.spec, "filesystems", std::move(filesystems_));
    Node devices = map(devices_node_ ? *devices_node_ : root);
    put(devices, "rng", boolean(rng_, devices));
    put(devices, "balloon", boolean(balloon_, devices));
    if (!builtin_pins_.empty()) {
        Node pins = map(devices);
        for (const auto& [key, d] : builtin_pins_)
            put(pins, key, text(spec::to_string(*d->pci), devices));
        put(devices, "pciAddresses", std::move(pins));
    }
    put(out_.spec, "devices", std::move(devices));
    return std::move(out_);
}

void Converter::vm_spec(const Node& spec, const std::string& path) {
    Fields f(diags_, spec, path);
    f.require("template");
    // How the cluster's controller keeps the VM running: qshim runs it once, as asked.
    f.get("running");
    f.get("runStrategy");
    // The volumes these create are the persistentVolumeClaims the template's volumes name.
    f.get("dataVolumeTemplates");
    if (const Node* t = f.get("template"); t && expect(*t, Node::Kind::map, path + ".template")) {
        Fields tf(diags_, *t, path + ".template");
        tf.get("metadata");  // the pod's labels and annotations
        tf.require("spec");
        if (const Node* s = tf.get("spec");
            s && expect(*s, Node::Kind::map, path + ".template.spec"))
            vmi_spec(*s, path + ".template.spec");
        tf.finish(unsupported);
    }
    f.finish(unsupported);
}

void Converter::vmi_spec(const Node& spec, const std::string& path) {
    Fields f(diags_, spec, path);
    for (const char* key : scheduling_fields) f.get(key);
    // Volumes and networks first: disks and interfaces name them.
    if (const Node* v = f.get("volumes"); v && expect(*v, Node::Kind::sequence, path + ".volumes"))
        read_volumes(*v, path + ".volumes");
    if (const Node* n = f.get("networks");
        n && expect(*n, Node::Kind::sequence, path + ".networks"))
        read_networks(*n, path + ".networks");
    // Set by KubeVirt's webhook in every stored object; qshim runs x86-64 guests.
    if (const Node* a = f.get("architecture"); a && a->value != "amd64")
        diags_.add(*a, path + ".architecture",
                   fmt::format("{}: {} (qshim runs amd64 guests)", a->value, unsupported));
    if (const Node* g = f.get("terminationGracePeriodSeconds")) {
        Node lifecycle = map(*g);
        put(lifecycle, "gracePeriodSeconds", *g);
        put(out_.spec, "lifecycle", std::move(lifecycle));
        origin("lifecycle.gracePeriodSeconds", path + ".terminationGracePeriodSeconds");
    }
    f.require("domain");
    if (const Node* d = f.get("domain"); d && expect(*d, Node::Kind::map, path + ".domain"))
        domain(*d, path + ".domain");
    f.finish(unsupported);
    unused_volumes_and_networks();
}

void Converter::domain(const Node& domain, const std::string& path) {
    Fields f(diags_, domain, path);
    std::string policy;
    if (f.string("ioThreadsPolicy", policy)) {
        if (policy == "shared")
            iothreads_shared_ = true;
        else
            diags_.add(*domain.find("ioThreadsPolicy"), path + ".ioThreadsPolicy",
                       policy == "auto" ? fmt::format("auto: {} (shared is)", unsupported)
                                        : "must be shared or auto");
    }
    if (const Node* m = f.get("machine"); m && expect(*m, Node::Kind::map, path + ".machine")) {
        Fields mf(diags_, *m, path + ".machine");
        // An empty type is KubeVirt's "unset": the cluster's default, q35.
        if (const Node* type = mf.get("type"); type && !type->value.empty()) {
            Node machine = map(*m);
            put(machine, "type", *type);
            put(out_.spec, "machine", std::move(machine));
            origin("machine", path + ".machine");
        }
        mf.finish(unsupported);
    }
    const Node* memory_node = f.get("memory");
    const Node* resources = f.get("resources");
    for (const char* which : {"requests", "limits"}) {
        const Node* r = resources ? resources->find(which) : nullptr;
        const Node* c = r ? r->find("cpu") : nullptr;
        auto whole = c && c->kind == Node::Kind::scalar ? parse_quantity(c->value) : std::nullopt;
        if (whole) resource_cpus_ = whole;  // the limit, read last, wins
    }
    const Node* cpu_node = f.get("cpu");
    if (!cpu_node) {
        no_cpu_ = map(domain);
        cpu(no_cpu_, path + ".cpu");
    } else if (expect(*cpu_node, Node::Kind::map, path + ".cpu")) {
        cpu(*cpu_node, path + ".cpu");
    }
    if (memory_node && !expect(*memory_node, Node::Kind::map, path + ".memory"))
        memory_node = nullptr;
    if (resources && !expect(*resources, Node::Kind::map, path + ".resources")) resources = nullptr;
    memory(memory_node, resources, path, domain);
    if (const Node* fw = f.get("firmware"); fw && expect(*fw, Node::Kind::map, path + ".firmware"))
        firmware(*fw, path + ".firmware");
    if (const Node* fe = f.get("features"); fe && expect(*fe, Node::Kind::map, path + ".features"))
        features(*fe, path + ".features");
    // The guest's RTC: QEMU's runs on UTC, which is what `utc: {}` asks for.
    if (const Node* c = f.get("clock"); c && expect(*c, Node::Kind::map, path + ".clock")) {
        Fields cf(diags_, *c, path + ".clock");
        if (const Node* utc = cf.get("utc");
            utc && expect(*utc, Node::Kind::map, path + ".clock.utc")) {
            Fields uf(diags_, *utc, path + ".clock.utc");
            if (const Node* off = uf.get("offsetSeconds"); off && off->value != "0")
                diags_.add(*off, path + ".clock.utc.offsetSeconds",
                           fmt::format("an offset: {} (the clock is UTC)", unsupported));
            uf.finish(unsupported);
        }
        cf.finish(unsupported);  // timezone, timer
    }
    if (const Node* d = f.get("devices"); d && expect(*d, Node::Kind::map, path + ".devices"))
        devices(*d, path + ".devices");
    else if (!d) {
        no_devices_ = map(domain);
        devices(no_devices_, path + ".devices");
    }
    f.finish(unsupported);
    if (iothreads_shared_ || dedicated_iothreads_)
        put(out_.spec, "iothreads",
            number((iothreads_shared_ ? 1 : 0) + dedicated_iothreads_, domain));
}

void Converter::cpu(const Node& cpu, const std::string& path) {
    Fields f(diags_, cpu, path);
    Node out = map(cpu);
    bool shaped = false;
    for (const char* key : {"sockets", "cores", "threads"})
        // 0 is KubeVirt's "unset".
        if (const Node* n = f.get(key); n && !(n->kind == Node::Kind::scalar && n->value == "0")) {
            put(out, key, *n);
            shaped = true;
        }
    if (!shaped && resource_cpus_ && *resource_cpus_ > 0)
        put(out, "sockets", number(*resource_cpus_, cpu));
    // host-model is KubeVirt's default: libvirt expands it to the host's own model. QEMU's
    // closest is host (which needs KVM).
    std::string model = "host";
    if (const Node* m = f.get("model")) {
        if (m->kind == Node::Kind::scalar && m->value != "host-model" &&
            m->value != "host-passthrough")
            put(out, "model", *m);
        else if (m->kind != Node::Kind::scalar)
            put(out, "model", *m);  // the spec reader says why not
        else
            put(out, "model", text(model, *m));
    } else {
        put(out, "model", text(model, cpu));
    }
    if (const Node* d = f.get("dedicatedCpuPlacement")) put(out, "dedicated", *d);
    if (const Node* i = f.get("isolateEmulatorThread")) put(out, "isolateEmulatorThread", *i);
    if (const Node* n = f.get("numa"); n && expect(*n, Node::Kind::map, path + ".numa")) {
        Fields nf(diags_, *n, path + ".numa");
        if (const Node* p = nf.get("guestMappingPassthrough")) {
            Node numa = map(*p);
            put(numa, "guestNodes", text("auto", *p));
            put(out_.spec, "numa", std::move(numa));
            origin("numa", path + ".numa");
        }
        nf.finish(unsupported);
    }
    f.finish(unsupported);
    put(out_.spec, "cpu", std::move(out));
    origin("cpu.dedicated", path + ".dedicatedCpuPlacement");
    origin("cpu", path);
}

void Converter::memory(const Node* memory, const Node* resources, const std::string& path,
                       const Node& domain) {
    const Node* size = nullptr;
    std::string size_path;
    Node out = map(memory ? *memory : domain);
    if (memory) {
        Fields f(diags_, *memory, path + ".memory");
        if ((size = f.get("guest"))) size_path = path + ".memory.guest";
        if (const Node* h = f.get("hugepages");
            h && expect(*h, Node::Kind::map, path + ".memory.hugepages")) {
            Fields hf(diags_, *h, path + ".memory.hugepages");
            hf.require("pageSize");
            if (const Node* p = hf.get("pageSize")) put(out, "hugepages", *p);
            hf.finish(unsupported);
            origin("memory.hugepages", path + ".memory.hugepages.pageSize");
        }
        f.finish(unsupported);
    }
    if (resources) {
        Fields f(diags_, *resources, path + ".resources");
        for (const char* which : {"requests", "limits"}) {
            const Node* n = f.get(which);
            std::string p = fmt::format("{}.resources.{}", path, which);
            if (!n || !expect(*n, Node::Kind::map, p)) continue;
            Fields rf(diags_, *n, p);
            // The pod's: what the scheduler reserves for it.
            rf.get("cpu");
            rf.get("ephemeral-storage");
            // Guest RAM: memory.guest, else the request, else the limit (KubeVirt's order).
            if (const Node* m = rf.get("memory"); m && !size) {
                size = m;
                size_path = p + ".memory";
            }
            rf.finish(unsupported);
        }
        f.finish(unsupported);
    }
    if (!size) {
        // KubeVirt refuses a VM without memory too.
        diags_.add(domain, path + ".memory.guest",
                   "the VM needs memory: set memory.guest or resources.requests.memory");
        return;
    }
    auto bytes = size->kind == Node::Kind::scalar ? parse_quantity(size->value) : std::nullopt;
    if (!bytes || *bytes == 0) {
        diags_.add(*size, size_path, "must be a whole quantity such as 2Gi, 512Mi or 1G");
        return;
    }
    // Rounded up to whole MiB, as libvirt aligns guest RAM for KubeVirt (1024M: 977Mi).
    put(out, "size", text(fmt::format("{}Mi", (*bytes + (1u << 20) - 1) >> 20), *size));
    put(out_.spec, "memory", std::move(out));
    origin("memory.size", size_path);
    origin("memory", path + ".memory");
}

void Converter::firmware(const Node& fw, const std::string& path) {
    Fields f(diags_, fw, path);
    Node out = map(fw);
    if (const Node* b = f.get("bootloader");
        b && expect(*b, Node::Kind::map, path + ".bootloader")) {
        Fields bf(diags_, *b, path + ".bootloader");
        if (const Node* bios = bf.get("bios");
            bios && expect(*bios, Node::Kind::map, path + ".bootloader.bios")) {
            Fields sf(diags_, *bios, path + ".bootloader.bios");
            refuse_true(sf, "useSerial", "qshim VMs have no display; SeaBIOS stays quiet");
            sf.finish(unsupported);
            put(out, "type", text("bios", *bios));
        }
        if (const Node* efi = bf.get("efi");
            efi && expect(*efi, Node::Kind::map, path + ".bootloader.efi")) {
            Fields ef(diags_, *efi, path + ".bootloader.efi");
            put(out, "type", text("uefi", *efi));
            // KubeVirt's default is on.
            const Node* secure = ef.get("secureBoot");
            put(out, "secureBoot", secure ? *secure : boolean(true, *efi));
            origin("firmware.secureBoot", path + ".bootloader.efi.secureBoot");
            // qshim always keeps the variable store in the state directory (docs/kubevirt.md).
            ef.get("persistent");
            ef.finish(unsupported);
        }
        if (bf.get("bios") && bf.get("efi"))
            diags_.add(*b, path + ".bootloader", "give bios or efi, not both");
        bf.finish(unsupported);
    }
    // SMBIOS identity: KubeVirt gives every VMI a uuid, so `kubectl get -o yaml` always has one.
    if (const Node* u = f.get("uuid")) put(out, "uuid", *u);
    if (const Node* s = f.get("serial")) put(out, "serial", *s);
    origin("firmware.uuid", path + ".uuid");
    origin("firmware.serial", path + ".serial");
    if (const Node* k = f.get("kernelBoot");
        k && expect(*k, Node::Kind::map, path + ".kernelBoot")) {
        Fields kf(diags_, *k, path + ".kernelBoot");
        Node boot = map(*k);
        if (const Node* c = kf.get("container");
            c && expect(*c, Node::Kind::map, path + ".kernelBoot.container")) {
            Fields cf(diags_, *c, path + ".kernelBoot.container");
            // The image is the cluster's to pull; virt-launcher finds its files by name.
            cf.require("image");
            cf.get("image");
            cf.get("imagePullPolicy");
            cf.get("imagePullSecret");
            for (auto [from, to] : {std::pair{"kernelPath", "kernel"}, {"initrdPath", "initrd"}}) {
                const Node* n = cf.get(from);
                if (!n || n->kind != Node::Kind::scalar) continue;
                auto name = std::filesystem::path(n->value).filename().string();
                if (name.empty() || name == "." || name == "..") {
                    diags_.add(*n, fmt::format("{}.kernelBoot.container.{}", path, from),
                               "must name a file");
                    continue;
                }
                put(boot, to, text(roots_.kernel_boot + "/" + name, *n));
            }
            cf.finish(unsupported);
        }
        if (const Node* args = kf.get("kernelArgs")) put(boot, "cmdline", *args);
        kf.finish(unsupported);
        put(out_.spec, "boot", std::move(boot));
        origin("boot", path + ".kernelBoot");
    }
    f.finish(unsupported);
    put(out_.spec, "firmware", std::move(out));
    origin("firmware", path + ".bootloader");
}

void Converter::features(const Node& features, const std::string& path) {
    Fields f(diags_, features, path);
    // On in every q35 VM qshim runs: asking for them changes nothing, turning them off is refused.
    for (const char* key : {"acpi", "apic", "smm"}) {
        const Node* n = f.get(key);
        std::string p = path + "." + key;
        if (!n || !expect(*n, Node::Kind::map, p)) continue;
        Fields ff(diags_, *n, p);
        if (const Node* on = ff.get("enabled"); on && on->value == "false")
            diags_.add(*on, p + ".enabled", fmt::format("turning {} off: {}", key, unsupported));
        ff.finish(unsupported);
    }
    if (const Node* hv = f.get("hyperv"))
        diags_.add(*hv, path + ".hyperv",
                   fmt::format("{} (Hyper-V enlightenments are CPU flags, which cpu.model does "
                               "not take)",
                               unsupported));
    f.finish(unsupported);
}

void Converter::refuse_true(Fields& f, std::string_view key, std::string_view why) {
    const Node* n = f.get(key);
    if (n && n->kind == Node::Kind::scalar && n->value == "true")
        diags_.add(*n, f.path_of(key), fmt::format("true: {} ({})", unsupported, why));
}

}  // namespace kubevirt

bool is_manifest(const Node& root) {
    return root.kind == Node::Kind::map && (root.find("apiVersion") || root.find("kind"));
}

std::optional<Converted> convert_manifest(Diagnostics& diags, const Node& root,
                                          const VolumeRoots& roots, const Domain* pins,
                                          std::vector<std::string>* notes) {
    return kubevirt::Converter(diags, roots, pins, notes).run(root);
}

std::string manifest_path(const Converted& c, const std::string& spec_path) {
    const std::pair<std::string, std::string>* best = nullptr;
    for (const auto& o : c.origins) {
        const std::string& prefix = o.first;
        bool match = spec_path == prefix ||
                     (spec_path.starts_with(prefix) &&
                      (spec_path[prefix.size()] == '.' || spec_path[prefix.size()] == '['));
        if (match && (!best || prefix.size() > best->first.size())) best = &o;
    }
    if (!best) return spec_path;
    return best->second + spec_path.substr(best->first.size());
}

}  // namespace qshim::spec::detail
