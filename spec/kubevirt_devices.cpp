// KubeVirt manifests: disks with the volumes behind them, interfaces with their networks, and the
// devices KubeVirt attaches on its own.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.hpp"
#include "spec/kubevirt_converter.hpp"
#include "spec/values.hpp"

namespace qshim::spec::detail::kubevirt {

namespace fs = std::filesystem;

namespace {

// The volume sources qshim maps as images; folder_sources below are the others it maps.
constexpr const char* disk_sources[] = {
    "containerDisk", "persistentVolumeClaim", "dataVolume", "hostDisk", "ephemeral", "emptyDisk"};
// Folders Kubernetes mounts in the pod: as a disk, an ISO image of the folder (as KubeVirt
// makes); as a filesystem, shared over virtio-fs.
constexpr const char* folder_sources[] = {"configMap", "secret", "serviceAccount", "downwardAPI"};
// The cloud-init sources, each qshim's seed for that datasource.
constexpr const char* no_cloud = "cloudInitNoCloud";
constexpr const char* config_drive = "cloudInitConfigDrive";
const char* cloud_init_source(const Node& volume) {
    return volume.find(no_cloud) ? no_cloud : volume.find(config_drive) ? config_drive : nullptr;
}
// An interface's bindings, the ones qshim refuses too: without any, KubeVirt has nothing to do.
constexpr const char* bindings[] = {"masquerade", "bridge", "sriov",        "slirp",
                                    "macvtap",    "passt",  "passtBinding", "binding"};

// A container disk may hold raw or qcow2; KubeVirt asks qemu-img. qshim reads the magic instead
// (an image that is not there to read, on another host, is taken as raw).
std::string image_format(const std::string& path) {
    qshim::detail::UniqueFd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    std::array<char, 4> magic{};
    struct stat st {};
    if (fd && fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
        read(fd.get(), magic.data(), magic.size()) == 4 &&
        std::memcmp(magic.data(), "QFI\xfb", 4) == 0)
        return "qcow2";
    return "raw";
}

// A block volume is a device node named after it; a filesystem volume holds disk.img.
std::string claim_path(const VolumeRoots& roots, const std::string& volume) {
    std::string block = roots.block_devices + "/" + volume;
    struct stat st {};
    if (stat(block.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return block;
    return roots.vmi_disks + "/" + volume + "/disk.img";
}

// Strict RFC 4648 base64, padding required; nullopt for anything else.
std::optional<std::string> decode_base64(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string clean;
    for (char c : in)
        if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
    if (clean.size() % 4 != 0) return std::nullopt;
    std::string out;
    for (size_t i = 0; i < clean.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = clean[i + k];
            if (c == '=' && i + 4 == clean.size() && k >= 2) {
                v[k] = 0;
                ++pad;
            } else if (pad || (v[k] = value(c)) < 0) {
                return std::nullopt;
            }
        }
        uint32_t bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out.push_back(static_cast<char>(bits >> 16));
        if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<char>(bits & 0xff));
    }
    return out;
}

// "DE-AD-00-00-BE-AF" (KubeVirt takes both forms) as "de:ad:00:00:be:af".
std::string normal_mac(std::string mac) {
    for (char& c : mac)
        c = c == '-' ? ':' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return mac;
}

}  // namespace

Converter::Named* Converter::find(std::vector<Named>& list, const std::string& name) {
    for (auto& n : list)
        if (n.name == name) return &n;
    return nullptr;
}

void Converter::read_volumes(const Node& volumes, const std::string& path) {
    for (size_t i = 0; i < volumes.items.size(); ++i) {
        const Node& v = volumes.items[i];
        std::string p = fmt::format("{}[{}]", path, i);
        if (!expect(v, Node::Kind::map, p)) continue;
        const Node* name = v.find("name");
        if (!name || name->kind != Node::Kind::scalar || name->value.empty()) {
            diags_.add(v, p + ".name", "required: a disk names its volume");
            continue;
        }
        // As Kubernetes requires; it also names folders and devices in the pod (VOLUME/disk.img,
        // /dev/VOLUME), so nothing like ".." may reach a path.
        if (!is_dns_label(name->value)) {
            diags_.add(*name, p + ".name",
                       "must be a DNS label: lowercase letters, digits and '-', at most 63 "
                       "characters");
            continue;
        }
        for (const auto& other : volumes_)
            if (other.name == name->value)
                diags_.add(*name, p + ".name",
                           fmt::format("{} is also the name of {}", name->value, other.path));
        volumes_.push_back({name->value, &v, p, false});
    }
}

void Converter::read_networks(const Node& networks, const std::string& path) {
    for (size_t i = 0; i < networks.items.size(); ++i) {
        const Node& n = networks.items[i];
        std::string p = fmt::format("{}[{}]", path, i);
        if (!expect(n, Node::Kind::map, p)) continue;
        Fields f(diags_, n, p);
        f.require("name");
        std::string name;
        f.string("name", name);
        if (const Node* pod = f.get("pod"); pod && expect(*pod, Node::Kind::map, p + ".pod")) {
            Fields pf(diags_, *pod, p + ".pod");
            pf.finish(unsupported);  // vmNetworkCIDR: user networking has its own 10.0.2.0/24
        } else if (!pod && n.entries.size() <= 1) {
            diags_.add(n, p, "needs a source: pod: {}");
        }
        f.finish(unsupported);
        if (!name.empty()) networks_.push_back({name, &n, p, false});
    }
}

void Converter::devices(const Node& devices, const std::string& path) {
    devices_node_ = &devices;
    Fields f(diags_, devices, path);
    bool flag = false;
    if (f.boolean("autoattachMemBalloon", flag)) balloon_ = flag;
    if (f.boolean("autoattachPodInterface", flag)) pod_interface_ = flag;
    // qshim's VMs always have their first serial port; the console is qshim's (docs/kubevirt.md).
    f.get("autoattachSerialConsole");
    refuse_true(f, "autoattachGraphicsDevice", "qshim VMs have no display");
    refuse_true(f, "autoattachInputDevice", "qshim VMs have no display");
    refuse_true(f, "autoattachVSOCK", "no vsock device yet");
    refuse_true(f, "networkInterfaceMultiqueue", "NICs have one queue pair");
    refuse_true(f, "blockMultiQueue", "disks have QEMU's default queues");
    refuse_true(f, "useVirtioTransitional", "virtio devices are modern only");
    refuse_true(f, "logSerialConsole", "serial.log is the spec's own");
    if (const Node* hd = f.get("hostDevices"))
        diags_.add(*hd, path + ".hostDevices",
                   fmt::format("{} (each names a device plugin's resource, whose host device "
                               "only the cluster knows; qshim's own spec pins hostDevices by "
                               "host address)",
                               unsupported));
    if (const Node* rng = f.get("rng"); rng && expect(*rng, Node::Kind::map, path + ".rng")) {
        rng_ = true;
        Fields(diags_, *rng, path + ".rng").finish(unsupported);
    }
    if (const Node* d = f.get("disks"); d && expect(*d, Node::Kind::sequence, path + ".disks"))
        for (size_t i = 0; i < d->items.size(); ++i)
            disk(d->items[i], fmt::format("{}.disks[{}]", path, i));
    if (const Node* fs = f.get("filesystems");
        fs && expect(*fs, Node::Kind::sequence, path + ".filesystems"))
        for (size_t i = 0; i < fs->items.size(); ++i)
            filesystem(fs->items[i], fmt::format("{}.filesystems[{}]", path, i));
    const Node* ifaces = f.get("interfaces");
    if (ifaces && expect(*ifaces, Node::Kind::sequence, path + ".interfaces"))
        for (size_t i = 0; i < ifaces->items.size(); ++i)
            interface(ifaces->items[i], fmt::format("{}.interfaces[{}]", path, i));
    f.finish(unsupported);
    // KubeVirt's pod network when the VM names none: one NIC, behind NAT.
    if (!ifaces && networks_.empty() && pod_interface_) {
        Node nic = map(devices);
        put(nic, "name", text("default", devices));
        Node backend = map(devices);
        put(backend, "type", text("user", devices));
        put(nic, "backend", std::move(backend));
        interfaces_.items.push_back(std::move(nic));
    }
}

void Converter::disk(const Node& node, const std::string& path) {
    if (!expect(node, Node::Kind::map, path)) return;
    Fields f(diags_, node, path);
    f.require("name");
    std::string name;
    if (!f.string("name", name) || name.empty()) {
        f.finish(unsupported);
        return;
    }
    Named* volume = find(volumes_, name);
    if (!volume) {
        diags_.add(*node.find("name"), path + ".name",
                   fmt::format("no volume named {} in spec.volumes", name));
        for (const auto& e : node.entries) f.get(e.key.value);  // nothing more to say of them
        return;
    }
    volume->used = true;
    const size_t volume_index = static_cast<size_t>(volume - volumes_.data());

    const Node* target = nullptr;
    std::string kind = "disk";
    for (const char* k : {"disk", "cdrom", "lun"})
        if (const Node* t = f.get(k)) {
            if (target) diags_.add(*t, path + "." + k, "give one of disk, cdrom and lun");
            target = t;
            kind = k;
        }
    if (cloud_init_source(*volume->node)) {
        // The seed is qshim's own virtio disk at a fixed address (docs/topology.md).
        for (const char* k : {"bootOrder", "serial"})
            if (f.get(k))
                diags_.add(
                    *node.find(k), path + "." + k,
                    "the cloud-init seed's disk is qshim's own: it takes no " + std::string(k));
        if (target) {
            Fields tf(diags_, *target, path + "." + kind);
            tf.get("bus");  // always virtio for the seed
            tf.get("readonly");
            tf.finish(unsupported);
        }
        f.finish(unsupported);
        cloud_init_disk_ = name;
        cloud_init(*volume->node, volume->path, path);
        return;
    }

    Node out = map(node);
    put(out, "name", *node.find("name"));
    const bool cdrom = kind == "cdrom";
    if (cdrom) put(out, "device", text("cdrom", *target));
    // KubeVirt's default on x86 is sata (every guest has an AHCI driver); a lun is a SCSI LUN.
    const bool lun = kind == "lun";
    std::string bus = lun ? "scsi" : "sata";
    if (target && expect(*target, Node::Kind::map, path + "." + kind)) {
        Fields tf(diags_, *target, path + "." + kind);
        if (const Node* b = tf.get("bus")) {
            if (b->kind == Node::Kind::scalar && b->value == "usb")
                diags_.add(*b, path + "." + kind + ".bus", fmt::format("usb: {}", unsupported));
            else if (lun && b->kind == Node::Kind::scalar && b->value != "scsi")
                diags_.add(*b, path + ".lun.bus", "a lun is on the scsi bus");
            else if (b->kind == Node::Kind::scalar)
                bus = b->value;
            put(out, "bus", *b);
        } else {
            put(out, "bus", text(bus, *target));
        }
        // qshim's lun is an emulated SCSI disk (scsi-hd), not SG_IO passthrough: nothing of the
        // device's own (vendor pages, reservations) reaches the guest (docs/kubevirt.md).
        if (lun)
            refuse_true(tf, "reservation",
                        "persistent reservations need SCSI passthrough and qemu-pr-helper");
        if (const Node* ro = tf.get("readonly")) put(out, "readOnly", *ro);
        if (const Node* pci = tf.get("pciAddress")) put(out, "pciAddress", *pci);
        if (cdrom)
            if (const Node* tray = tf.get("tray"); tray && tray->value != "closed")
                diags_.add(*tray, path + ".cdrom.tray",
                           fmt::format("{}: {} (the tray is closed)", tray->value, unsupported));
        tf.finish(unsupported);
    } else {
        put(out, "bus", text(bus, node));
    }
    origin(fmt::format("disks[{}].bus", disks_.items.size()), path + "." + kind + ".bus");
    origin(fmt::format("disks[{}].readOnly", disks_.items.size()), path + "." + kind + ".readonly");
    origin(fmt::format("disks[{}].pciAddress", disks_.items.size()),
           path + "." + kind + ".pciAddress");
    if (const Node* b = f.get("bootOrder")) put(out, "bootOrder", *b);
    if (const Node* s = f.get("serial")) put(out, "serial", *s);
    // none, writethrough, writeback: the same names and meanings as qshim's.
    if (const Node* c = f.get("cache")) put(out, "cache", *c);
    bool dedicated = false;
    if (f.boolean("dedicatedIOThread", dedicated) && dedicated) {
        if (bus != "virtio")
            diags_.add(*node.find("dedicatedIOThread"), path + ".dedicatedIOThread",
                       "a dedicated IOThread is for a virtio disk");
        else
            put(out, "iothread",
                number((iothreads_shared_ ? 1 : 0) + dedicated_iothreads_++, node));
    } else if (iothreads_shared_ && (bus == "virtio" || bus == "scsi")) {
        put(out, "iothread", number(0, node));
    }
    f.finish(unsupported);
    if (volume_source(volume_index, out, cdrom)) {
        origin(fmt::format("disks[{}]", disks_.items.size()), path);
        disks_.items.push_back(std::move(out));
    }
}

bool Converter::volume_source(size_t index, Node& out, bool cdrom) {
    const Named& volume = volumes_[index];
    const Node& v = *volume.node;
    Fields f(diags_, v, volume.path);
    f.get("name");
    const Node* source = nullptr;
    std::string kind;
    auto take = [&](const char* k) {
        if (const Node* s = f.get(k)) {
            if (source) diags_.add(*s, volume.path + "." + k, "a volume has one source");
            source = s;
            kind = k;
        }
    };
    for (const char* k : disk_sources) take(k);
    for (const char* k : folder_sources) take(k);
    f.get(no_cloud);
    f.get(config_drive);
    f.finish(unsupported);
    if (!source) {
        // finish() has named the source qshim does not take, if there was one.
        if (v.entries.size() <= 1) diags_.add(v, volume.path, "the volume has no source");
        return false;
    }
    const std::string p = volume.path + "." + kind;
    if (!expect(*source, Node::Kind::map, p)) return false;
    if (std::find_if(std::begin(folder_sources), std::end(folder_sources),
                     [&](const char* k) { return kind == k; }) != std::end(folder_sources)) {
        // As KubeVirt does: an ISO image of the folder Kubernetes mounts in the pod, read-only,
        // labelled volumeLabel. What the source names is the cluster's: the pod has the folder.
        put(out, "folder", text(folder_of_volume(kind, volume.name), *source));
        for (const auto& e : source->entries)
            if (e.key.value == "volumeLabel") put(out, "volumeLabel", e.value);
        return true;
    }
    Fields sf(diags_, *source, p);
    std::string path, format = "raw";
    bool ephemeral = false;
    if (kind == "containerDisk") {
        // The cluster pulls the image; virt-launcher links its disk as disk_N.img, N the
        // volume's index in spec.volumes.
        sf.require("image");
        for (const char* k : {"image", "path", "imagePullPolicy", "imagePullSecret"}) sf.get(k);
        path = fmt::format("{}/disk_{}.img", roots_.container_disks, index);
        format = image_format(path);
        if (notes_ && !fs::exists(path))
            notes_->push_back(fmt::format("{} ({}): {} is not here to read: taken as raw",
                                          volume.path, volume.name, path));
        ephemeral = !cdrom;  // a cdrom is read-only already
    } else if (kind == "persistentVolumeClaim" || kind == "dataVolume") {
        const char* ref = kind == "dataVolume" ? "name" : "claimName";
        sf.require(ref);
        sf.get(ref);
        refuse_true(sf, "hotpluggable", "hot-plug the disk through the API");
        if (const Node* ro = sf.get("readOnly"); ro && ro->value == "true")
            put(out, "readOnly", *ro);
        path = claim_path(roots_, volume.name);
        note_absent_claim(volume.path, volume.name, path);
    } else if (kind == "hostDisk") {
        sf.require("path");
        if (const Node* n = sf.get("path"); n && n->kind == Node::Kind::scalar) path = n->value;
        std::string type;
        if (sf.string("type", type) && type != "Disk")
            diags_.add(*source->find("type"), p + ".type",
                       type == "DiskOrCreate" ? fmt::format("DiskOrCreate: {} yet", unsupported)
                                              : "must be Disk or DiskOrCreate");
        sf.get("capacity");
        refuse_true(sf, "shared", "qshim does not share images between VMs");
    } else if (kind == "emptyDisk") {
        // A blank disk for this run: KubeVirt's is a qcow2 of the capacity, rounded down to
        // whole MiB, gone with the VMI; qshim's blank disk is the same.
        sf.require("capacity");
        if (const Node* c = sf.get("capacity")) {
            auto bytes = c->kind == Node::Kind::scalar ? parse_quantity(c->value) : std::nullopt;
            if (!bytes || *bytes < (1u << 20))
                diags_.add(*c, p + ".capacity", "must be a quantity of at least 1Mi, such as 2Gi");
            else
                put(out, "capacity", text(fmt::format("{}Mi", *bytes >> 20), *c));
        }
        sf.finish(unsupported);
        if (cdrom) {
            diags_.add(*source, p, "a blank cdrom holds nothing");
            return false;
        }
        return true;
    } else {  // ephemeral: a claim under a throw-away overlay
        sf.require("persistentVolumeClaim");
        if (const Node* c = sf.get("persistentVolumeClaim");
            c && expect(*c, Node::Kind::map, p + ".persistentVolumeClaim")) {
            Fields cf(diags_, *c, p + ".persistentVolumeClaim");
            cf.require("claimName");
            cf.get("claimName");
            cf.get("readOnly");
            cf.finish(unsupported);
        }
        path = claim_path(roots_, volume.name);
        note_absent_claim(volume.path, volume.name, path);
        ephemeral = !cdrom;
    }
    sf.finish(unsupported);
    if (path.empty()) return false;
    put(out, "path", text(path, *source));
    put(out, "format", text(format, *source));
    if (ephemeral) put(out, "ephemeral", boolean(true, *source));
    return true;
}

void Converter::cloud_init(const Node& volume, const std::string& volume_path,
                           const std::string& disk_path) {
    const char* kind = cloud_init_source(volume);
    const std::string p = volume_path + "." + kind;
    if (cloud_init_seen_) {
        diags_.add(
            volume, volume_path,
            fmt::format("a second cloud-init volume (used by {}): a VM has one seed", disk_path));
        return;
    }
    cloud_init_seen_ = true;
    const Node& source = *volume.find(kind);
    if (!expect(source, Node::Kind::map, p)) return;
    const std::string volume_name = volume.find("name")->value;
    Fields f(diags_, source, p);
    Node out = map(source);
    put(out, "datasource", text(kind == no_cloud ? "noCloud" : "configDrive", source));
    // Each of user data and network data: inline, base64, or a secret's key (a file in the pod).
    struct Part {
        const char* plain;
        const char* base64;
        const char* secret;
        const char* alt_secret;  // KubeVirt's older name for the same reference
        const char* key;         // the secret's key, as virt-launcher mounts it
        const char* spec_key;    // qshim's field
    };
    for (const Part& part : {Part{"userData", "userDataBase64", "userDataSecretRef", "secretRef",
                                  "userdata", "userData"},
                             Part{"networkData", "networkDataBase64", "networkDataSecretRef",
                                  nullptr, "networkdata", "networkConfig"}}) {
        const Node* plain = f.get(part.plain);
        const Node* b64 = f.get(part.base64);
        const Node* secret = f.get(part.secret);
        std::string secret_key = part.secret;
        if (!secret && part.alt_secret) {
            secret = f.get(part.alt_secret);
            secret_key = part.alt_secret;
        }
        if ((plain != nullptr) + (b64 != nullptr) + (secret != nullptr) > 1) {
            diags_.add(
                source, p,
                fmt::format("give one of {}, {} and {}", part.plain, part.base64, secret_key));
            continue;
        }
        if (plain) {
            put(out, part.spec_key, *plain);
            origin(fmt::format("cloudInit.{}", part.spec_key), p + "." + part.plain);
        } else if (b64) {
            auto decoded =
                b64->kind == Node::Kind::scalar ? decode_base64(b64->value) : std::nullopt;
            if (!decoded)
                diags_.add(*b64, p + "." + part.base64, "is not base64");
            else
                put(out, part.spec_key, text(*decoded, *b64));
            origin(fmt::format("cloudInit.{}", part.spec_key), p + "." + part.base64);
        } else if (secret && expect(*secret, Node::Kind::map, p + "." + secret_key)) {
            Fields sf(diags_, *secret, p + "." + secret_key);
            sf.require("name");
            sf.get("name");
            sf.finish(unsupported);
            // virt-launcher mounts the secret as a folder named after the volume.
            put(out, std::string(part.spec_key) + "File",
                text(fmt::format("{}/{}/{}", roots_.secrets, volume_name, part.key), *secret));
            origin(fmt::format("cloudInit.{}File", part.spec_key), p + "." + secret_key);
        }
    }
    f.finish(unsupported);
    if (out.entries.size() <= 1)  // the datasource alone
        diags_.add(source, p, "needs user data or network data");
    put(out_.spec, "cloudInit", std::move(out));
    origin("cloudInit", p);
}

// A folder of the pod shared with the guest over virtio-fs, its tag the volume's name (as
// KubeVirt's): a configMap, secret, downwardAPI or serviceAccount volume read-only, a claim
// writable.
// Outside the pod (converting on another host) a claim's files are not there: say which kind
// of claim qshim took it for.
void Converter::note_absent_claim(const std::string& path, const std::string& name,
                                  const std::string& file) {
    if (notes_ && !fs::exists(file))
        notes_->push_back(
            fmt::format("{} ({}): neither {}/{} nor {} is here: taken as a "
                        "filesystem claim, not a block one",
                        path, name, roots_.block_devices, name, file));
}

std::string Converter::folder_of_volume(std::string_view kind, const std::string& name) const {
    if (kind == "configMap") return roots_.config_maps + "/" + name;
    if (kind == "secret") return roots_.secrets + "/" + name;
    if (kind == "downwardAPI") return roots_.downward_api + "/" + name;
    if (kind == "serviceAccount") return roots_.service_account;
    return roots_.vmi_disks + "/" + name;  // a filesystem claim
}

void Converter::filesystem(const Node& node, const std::string& path) {
    if (!expect(node, Node::Kind::map, path)) return;
    Fields f(diags_, node, path);
    f.require("name");
    f.require("virtiofs");
    if (const Node* v = f.get("virtiofs"); v && expect(*v, Node::Kind::map, path + ".virtiofs"))
        Fields(diags_, *v, path + ".virtiofs").finish(unsupported);
    std::string name;
    if (!f.string("name", name) || name.empty()) {
        f.finish(unsupported);
        return;
    }
    f.finish(unsupported);
    Named* volume = find(volumes_, name);
    if (!volume) {
        diags_.add(*node.find("name"), path + ".name",
                   fmt::format("no volume named {} in spec.volumes", name));
        return;
    }
    if (volume->used) {
        diags_.add(*node.find("name"), path + ".name",
                   fmt::format("volume {} is used by a disk too", name));
        return;
    }
    volume->used = true;
    const Node& v = *volume->node;
    Fields vf(diags_, v, volume->path);
    vf.get("name");
    std::string folder;
    bool read_only = true;
    const Node* source = nullptr;
    for (const char* k : {"configMap", "secret", "downwardAPI", "serviceAccount",
                          "persistentVolumeClaim", "dataVolume"}) {
        const Node* s = vf.get(k);
        if (!s) continue;
        source = s;
        folder = folder_of_volume(k, name);
        if (std::string_view(k) == "persistentVolumeClaim" || std::string_view(k) == "dataVolume")
            read_only = false;  // a filesystem claim, mounted as a folder
        // What the source names (the configMap's name, its items, ...) is the cluster's: the
        // pod has it mounted at the folder by now.
        if (expect(*s, Node::Kind::map, volume->path + "." + k))
            for (const auto& e : s->entries)
                if (e.key.value == "readOnly" && e.value.value == "true") read_only = true;
    }
    vf.finish(
        "not a folder to share: a filesystem shares a configMap, secret, downwardAPI, "
        "serviceAccount or claim volume");
    if (!source) return;
    Node out = map(node);
    put(out, "name", *node.find("name"));
    put(out, "path", text(folder, *source));
    put(out, "tag", *node.find("name"));
    put(out, "readOnly", boolean(read_only, *source));
    origin(fmt::format("filesystems[{}]", filesystems_.items.size()), path);
    origin(fmt::format("filesystems[{}].path", filesystems_.items.size()), volume->path);
    filesystems_.items.push_back(std::move(out));
}

void Converter::interface(const Node& node, const std::string& path) {
    if (!expect(node, Node::Kind::map, path)) return;
    Fields f(diags_, node, path);
    f.require("name");
    std::string name;
    if (!f.string("name", name) || name.empty()) {
        f.finish(unsupported);
        return;
    }
    Named* network = find(networks_, name);
    if (!network)
        diags_.add(*node.find("name"), path + ".name",
                   fmt::format("no network named {} in spec.networks", name));
    else
        network->used = true;
    Node out = map(node);
    put(out, "name", *node.find("name"));
    const size_t index = interfaces_.items.size();
    if (const Node* m = f.get("model")) put(out, "model", *m);
    if (const Node* mac = f.get("macAddress")) {
        put(out, "mac",
            mac->kind == Node::Kind::scalar ? text(normal_mac(mac->value), *mac) : *mac);
        origin(fmt::format("interfaces[{}].mac", index), path + ".macAddress");
    }
    if (const Node* pci = f.get("pciAddress")) put(out, "pciAddress", *pci);
    if (const Node* b = f.get("bootOrder")) put(out, "bootOrder", *b);
    // The binding: how the pod's network reaches the NIC.
    const Node* masquerade = f.get("masquerade");
    // KubeVirt's slirp binding (removed in KubeVirt 1.3) is QEMU's user network itself.
    const Node* slirp = f.get("slirp");
    const Node* passt = f.get("passt");
    const Node* bridge = f.get("bridge");
    const Node* plugin = f.get("binding");
    const Node* chosen = nullptr;
    std::string binding;
    for (auto [key, n] :
         {std::pair{"masquerade", masquerade}, std::pair{"slirp", slirp}, std::pair{"passt", passt},
          std::pair{"bridge", bridge}, std::pair{"binding", plugin}}) {
        if (!n) continue;
        if (chosen)
            diags_.add(*n, path + "." + key, fmt::format("a second binding: {} is set", binding));
        else if (expect(*n, Node::Kind::map, path + "." + key))
            chosen = n, binding = key;
    }
    if (plugin && chosen == plugin) {
        // A network binding plugin, by the name the cluster registered it under: passt's is
        // the one qshim knows (KubeVirt ships it as "passt").
        Fields bf(diags_, *plugin, path + ".binding");
        bf.require("name");
        std::string name;
        if (bf.string("name", name) && name != "passt")
            diags_.add(
                *plugin->find("name"), path + ".binding.name",
                fmt::format("{}: {} (the binding plugin qshim knows is passt)", name, unsupported));
        binding = "passt";
        bf.finish(unsupported);
    } else if (chosen) {
        Fields(diags_, *chosen, path + "." + binding).finish(unsupported);
    }
    for (const char* other : {"sriov", "macvtap", "passtBinding"})
        if (const Node* n = f.get(other))
            diags_.add(*n, path + "." + other,
                       std::string(other) == "sriov"
                           ? fmt::format("{} (SR-IOV needs a VFIO device the cluster assigns)",
                                         unsupported)
                           : std::string(unsupported));
    Node backend = map(chosen ? *chosen : node);
    if (binding == "masquerade" || binding == "slirp") {
        // NAT with DHCP, as masquerade gives the guest: QEMU's user network.
        put(backend, "type", text("user", *chosen));
    } else if (binding == "passt") {
        // qshim runs passt in the pod's network namespace: the guest gets the pod's address.
        put(backend, "type", text("passt", *chosen));
    } else if (binding == "bridge") {
        // The tap that the cluster's network setup makes in the pod for the pod network
        // (KubeVirt names it tap0); QEMU opens it by name and runs no scripts.
        put(backend, "type", text("tap", *chosen));
        put(backend, "name", text("tap0", *chosen));
    } else if (std::none_of(std::begin(bindings), std::end(bindings),
                            [&](const char* b) { return node.find(b) != nullptr; })) {
        diags_.add(node, path, "needs a binding: masquerade, passt or bridge");
    }
    if (const Node* ports = f.get("ports");
        ports && expect(*ports, Node::Kind::sequence, path + ".ports")) {
        Node forwards = sequence(*ports);
        for (size_t i = 0; i < ports->items.size(); ++i) {
            const Node& port = ports->items[i];
            std::string pp = fmt::format("{}.ports[{}]", path, i);
            if (!expect(port, Node::Kind::map, pp)) continue;
            Fields pf(diags_, port, pp);
            pf.get("name");
            pf.require("port");
            Node fwd = map(port);
            std::string protocol = "TCP";
            if (pf.string("protocol", protocol) && protocol != "TCP" && protocol != "UDP")
                diags_.add(*port.find("protocol"), pp + ".protocol", "must be TCP or UDP");
            put(fwd, "protocol", text(protocol == "UDP" ? "udp" : "tcp", port));
            // The pod's address, every port of it: the guest's port on every host address.
            put(fwd, "hostAddress", text("0.0.0.0", port));
            if (const Node* n = pf.get("port")) {
                put(fwd, "hostPort", *n);
                put(fwd, "guestPort", *n);
            }
            pf.finish(unsupported);
            origin(fmt::format("interfaces[{}].backend.portForwards[{}]", index, i), pp + ".port");
            forwards.items.push_back(std::move(fwd));
        }
        if (binding == "bridge")
            diags_.add(*ports, path + ".ports",
                       "the bridge binding forwards nothing: the guest has the pod's address");
        put(backend, "portForwards", std::move(forwards));
    }
    f.finish(unsupported);
    put(out, "backend", std::move(backend));
    origin(fmt::format("interfaces[{}]", index), path);
    interfaces_.items.push_back(std::move(out));
}

void Converter::unused_volumes_and_networks() {
    // KubeVirt's webhook gives every volume that no disk or filesystem names a disk of its own,
    // with the defaults (SetDefaultVolumeDisk): a sata disk on x86.
    // Said on stderr, as a manifest that names no disk for a volume may well be a mistake.
    for (size_t i = 0; i < volumes_.size(); ++i) {
        if (volumes_[i].used) continue;
        if (notes_)
            notes_->push_back(fmt::format(
                "{} ({}, line {}): no disk or filesystem names it: it gets a sata disk of its "
                "own, as KubeVirt's admission webhook gives it",
                volumes_[i].path, volumes_[i].name, volumes_[i].node->line));
        Node implied = map(*volumes_[i].node);
        put(implied, "name", *volumes_[i].node->find("name"));
        const std::string path = volumes_[i].path;  // disk() may grow volumes_' users
        disk(implied, path);
    }
    for (const auto& n : networks_)
        if (!n.used)
            diags_.add(*n.node, n.path,
                       fmt::format("network {} is used by no interface in "
                                   "spec.domain.devices.interfaces",
                                   n.name));
}

}  // namespace qshim::spec::detail::kubevirt
