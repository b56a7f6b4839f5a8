// build_command(): the QEMU command line for a planned VM, and the fds it names.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <qshim/launcher.hpp>

#include "launcher/device_json.hpp"
#include "launcher/state_dir.hpp"

namespace qshim::launcher {

using Json = nlohmann::ordered_json;
using topology::Device;
using topology::DeviceKind;

namespace {

std::string hex(unsigned v) { return fmt::format("0x{:x}", v); }

std::string node_name(char prefix, std::string_view name) {
    // QEMU node names are at most 31 characters; a DNS label may be 63. Long names keep a
    // readable head and a hash of the whole so two long names cannot collide.
    std::string full = fmt::format("{}.{}", prefix, name);
    if (full.size() <= 31) return full;
    uint32_t h = 2166136261u;
    for (unsigned char c : name) h = (h ^ c) * 16777619u;
    return fmt::format("{}.{}.{:08x}", prefix, name.substr(0, 20), h);
}

class ArgvBuilder {
  public:
    ArgvBuilder(const spec::VmSpec& spec, const topology::Topology& topo,
                const CommandOptions& options)
        : spec_(spec), topo_(topo), options_(options) {}

    Result<CommandLine> build() {
        if (auto ok = check_pair(); !ok) return std::move(ok).error();
        spec::Accel accel = options_.accel.value_or(spec_.machine.accel);
        if (options_.serial_stdio && !spec_.serial.socket.empty())
            return make_error(Errc::invalid_spec,
                              "the console cannot go to stdout and to serial.socket at once",
                              "building the QEMU command line for " + spec_.name);
        if (options_.serial_fd && (options_.serial_stdio || !spec_.serial.socket.empty()))
            return make_error(Errc::invalid_spec,
                              "the console cannot go to qshim and to stdout or serial.socket at "
                              "once",
                              "building the QEMU command line for " + spec_.name);
        if (spec_.cpu.model == "host" && accel == spec::Accel::tcg)
            return make_error(Errc::invalid_spec,
                              "cpu.model host needs KVM, but the accelerator is tcg",
                              "building the QEMU command line for " + spec_.name);
        arg(options_.qemu_binary);
        arg("-name", fmt::format("guest={},debug-threads=on", qemu_opts_escape(spec_.name)));
        if (spec_.numa.automatic)
            return make_error(Errc::invalid_spec,
                              "numa.guestNodes is auto: resolve it for this host first "
                              "(launcher::plan_placement and resolve_numa)",
                              "building the QEMU command line for " + spec_.name);
        // One backend for all of RAM when it needs properties -m cannot express.
        const bool ram_backend =
            spec_.numa.nodes.empty() &&
            (spec_.memory.hugepage_bytes || spec_.memory.prealloc || detail::shares_memory(spec_));
        const bool uefi = spec_.firmware.type == spec::FirmwareType::uefi;
        arg("-machine",
            fmt::format("{},usb=off,dump-guest-core=off{}{}{}", topo_.machine,
                        ram_backend ? ",memory-backend=ram" : "",
                        uefi ? ",pflash0=fw.code,pflash1=fw.vars" : "",
                        // Secure boot's firmware keeps its variables safe from the OS in SMM.
                        spec_.firmware.secure_boot ? ",smm=on" : ""));
        // A list of -accel is tried in order: "auto" means KVM when it works, TCG otherwise.
        if (accel != spec::Accel::tcg) arg("-accel", "kvm");
        // TCG keeps QEMU's default translation cache: a small tb-size makes QEMU flush it during
        // every boot, and QEMU 7.2 was seen to crash (SIGSEGV) in a flush with 2 vCPUs.
        if (accel != spec::Accel::kvm) arg("-accel", "tcg");
        arg("-cpu", spec_.cpu.model);
        arg("-smp", fmt::format("cpus={},sockets={},cores={},threads={}", spec_.cpu.count(),
                                spec_.cpu.sockets, spec_.cpu.cores, spec_.cpu.threads));
        arg("-m", fmt::format("{}M", spec_.memory.size_bytes >> 20));
        if (ram_backend) json("-object", memory_backend("ram", spec_.memory.size_bytes, nullptr));
        numa();
        for (unsigned i = 0; i < spec_.iothreads; ++i)
            json("-object", Json{{"qom-type", "iothread"}, {"id", detail::iothread_id(i)}});
        // No devices, config files or displays we did not ask for: the topology is all there is.
        arg("-nodefaults");
        arg("-no-user-config");
        arg("-display", "none");
        // QEMU's own seccomp deny-list, as libvirt sets it by default.
        arg("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        firmware();
        smbios();
        if (options_.paused) arg("-S");
        if (options_.incoming) arg("-incoming", "defer");
        qmp();
        boot();
        serial();
        controllers();
        // A bus must exist before anything plugs into it: built-in controllers come first.
        for (const auto& d : topo_.devices)
            if (d.spec_index < 0) device(d);
        for (const auto& d : topo_.devices)
            if (d.spec_index >= 0) device(d);
        if (has_boot_order()) arg("-boot", "strict=on");
        return CommandLine{std::move(argv_), std::move(fds_)};
    }

  private:
    void arg(std::string a) { argv_.push_back(std::move(a)); }
    void arg(std::string a, std::string b) {
        argv_.push_back(std::move(a));
        argv_.push_back(std::move(b));
    }
    void json(const char* option, const Json& j) { arg(option, j.dump()); }

    // The fd QEMU will know `source` as: numbered from 3 in the order argv names them, so the
    // number in argv and the plan that puts the fd there are made in one place.
    int inherit(int source, std::string purpose) {
        int target = 3 + static_cast<int>(fds_.size());
        fds_.push_back(InheritedFd{target, source, std::move(purpose)});
        return target;
    }

    // A topology planned from another spec would index past the spec's lists (or name other
    // devices): refuse it rather than build a command line from the mix.
    Result<void> check_pair() const {
        for (const auto& d : topo_.devices) {
            if (d.spec_index < 0) continue;
            auto index = static_cast<size_t>(d.spec_index);
            const std::string* name = nullptr;
            switch (d.kind) {
                case DeviceKind::disk:
                    if (index < spec_.disks.size()) name = &spec_.disks[index].name;
                    break;
                case DeviceKind::interface:
                    if (index < spec_.interfaces.size()) name = &spec_.interfaces[index].name;
                    break;
                case DeviceKind::hostdev:
                    if (index < spec_.host_devices.size()) name = &spec_.host_devices[index].name;
                    break;
                case DeviceKind::filesystem:
                    if (index < spec_.filesystems.size()) name = &spec_.filesystems[index].name;
                    break;
                case DeviceKind::controller:
                case DeviceKind::system:
                    break;
            }
            if (!name || *name != d.name)
                return make_error(Errc::topology,
                                  fmt::format("the topology was not planned from this spec: it "
                                              "places {} {} as entry {} of the spec, which has {}",
                                              to_string(d.kind), d.name, d.spec_index,
                                              name ? *name : std::string("no such entry")),
                                  "building the QEMU command line for " + spec_.name);
        }
        return {};
    }

    // Guest RAM (or one NUMA node's): memfd with huge pages when asked (no hugetlbfs mount
    // needed in the pod), preallocated when asked, bound to host nodes when given.
    Json memory_backend(const std::string& id, uint64_t bytes, const spec::HostSet* host_nodes) {
        const auto& m = spec_.memory;
        const bool shared = detail::shares_memory(spec_);
        Json j{{"qom-type",
                m.hugepage_bytes || shared ? "memory-backend-memfd" : "memory-backend-ram"},
               {"id", id},
               {"size", bytes}};
        // A vhost-user server maps guest RAM to reach the virtqueues: an fd QEMU can pass it.
        if (shared) j["share"] = true;
        if (m.hugepage_bytes) {
            j["hugetlb"] = true;
            j["hugetlbsize"] = m.hugepage_bytes;
        }
        if (m.prealloc) j["prealloc"] = true;
        if (host_nodes) {
            j["host-nodes"] = Json(std::vector<unsigned>(host_nodes->begin(), host_nodes->end()));
            j["policy"] = "bind";
        }
        return j;
    }

    // -numa has no JSON form in QEMU 7.2; every value here is a number or an id qshim made.
    void numa() {
        const auto& nodes = spec_.numa.nodes;
        for (size_t i = 0; i < nodes.size(); ++i) {
            std::string id = fmt::format("ram-node{}", i);
            json("-object", memory_backend(id, nodes[i].memory_bytes,
                                           nodes[i].host_nodes ? &*nodes[i].host_nodes : nullptr));
            arg("-numa", fmt::format("node,nodeid={},memdev={}", i, id));
        }
        const auto& cpu = spec_.cpu;
        for (size_t i = 0; i < nodes.size(); ++i)
            for (unsigned v : nodes[i].vcpus)
                arg("-numa", fmt::format("cpu,node-id={},socket-id={},core-id={},thread-id={}", i,
                                         v / (cpu.cores * cpu.threads), v / cpu.threads % cpu.cores,
                                         v % cpu.threads));
    }

    void qmp() {
        if (options_.qmp_fd) {
            int fd = inherit(*options_.qmp_fd, "QMP");
            arg("-chardev", fmt::format("socket,id=qmp,fd={}", fd));
            arg("-mon", "chardev=qmp,mode=control");
        }
        if (!options_.qmp_socket.empty()) {
            // A monitor of its own, so a person or test can inspect QEMU beside qshim's monitor.
            const char* id = options_.qmp_fd ? "qmp.extra" : "qmp";
            arg("-chardev", fmt::format("socket,id={},path={},server=on,wait=off", id,
                                        qemu_opts_escape(options_.qmp_socket)));
            arg("-mon", fmt::format("chardev={},mode=control", id));
        }
    }

    std::string state_dir() const {
        return options_.state_dir.empty() ? default_state_dir(spec_) : options_.state_dir;
    }

    // OVMF's code read-only and the VM's own copy of the variable store, as pflash block nodes
    // (fw.code, fw.vars: no disk's node can take these names; theirs are one letter, '.', name).
    // What the guest reads as its system's identity (DMI type 1).
    void smbios() {
        if (!spec_.firmware.uuid.empty()) arg("-uuid", spec_.firmware.uuid);
        if (!spec_.firmware.serial.empty())
            arg("-smbios", "type=1,serial=" + spec_.firmware.serial);
    }

    void firmware() {
        if (spec_.firmware.type != spec::FirmwareType::uefi) return;
        const bool secure = spec_.firmware.secure_boot;
        auto files = detail::ovmf_files(secure, options_.firmware_dir);
        auto pflash = [this](const char* name, const std::string& path, bool read_only) {
            std::string file = std::string(name) + ".file";
            json("-blockdev", Json{{"driver", "file"},
                                   {"filename", path},
                                   {"node-name", file},
                                   {"read-only", read_only}});
            json("-blockdev", Json{{"driver", "raw"},
                                   {"file", file},
                                   {"node-name", name},
                                   {"read-only", read_only}});
        };
        pflash("fw.code", files.code, true);
        pflash("fw.vars", detail::efi_vars_path(state_dir(), secure), false);
        // Only SMM code may write the variable store, or the OS could change secure boot's keys.
        if (secure) arg("-global", "driver=cfi.pflash01,property=secure,value=on");
    }

    void boot() {
        // -kernel/-initrd/-append take their value verbatim; no option parsing applies.
        if (!spec_.boot.kernel.empty()) arg("-kernel", spec_.boot.kernel);
        if (!spec_.boot.initrd.empty()) arg("-initrd", spec_.boot.initrd);
        if (!spec_.boot.cmdline.empty()) arg("-append", spec_.boot.cmdline);
    }

    void serial() {
        const auto& s = spec_.serial;
        if (options_.serial_fd) {
            // No logfile: the socket's holder writes serial.log. QEMU 7.2 logs a byte again when
            // the socket is full (char.c logs the whole buffer on any error, EAGAIN included,
            // then the UART retries it), so its log of a lagging reader repeats characters.
            arg("-chardev", fmt::format("socket,id=serial0,fd={}",
                                        inherit(*options_.serial_fd, "serial console")));
        } else if (options_.serial_stdio) {
            // signal=off: a ^C typed at qshim's terminal is qshim's to handle, not QEMU's.
            std::string chardev = "stdio,id=serial0,signal=off";
            if (!s.log.empty())
                chardev += fmt::format(",logfile={},logappend=on", qemu_opts_escape(s.log));
            arg("-chardev", chardev);
        } else if (!s.socket.empty()) {
            std::string chardev = fmt::format("socket,id=serial0,path={},server=on,wait=off",
                                              qemu_opts_escape(s.socket));
            if (!s.log.empty())
                chardev += fmt::format(",logfile={},logappend=on", qemu_opts_escape(s.log));
            arg("-chardev", chardev);
        } else if (!s.log.empty()) {
            arg("-chardev",
                fmt::format("file,id=serial0,path={},append=on", qemu_opts_escape(s.log)));
        } else {
            arg("-chardev", "null,id=serial0");
        }
        arg("-serial", "chardev:serial0");
    }

    void controllers() {
        for (const auto& c : topo_.controllers) {
            Json j{{"driver", c.model}, {"id", c.id}, {"bus", c.parent}};
            j["addr"] = fmt::format("0x{:x}.{:x}", c.address.slot, c.address.function);
            if (c.model == "pcie-root-port") {
                if (c.multifunction) j["multifunction"] = true;
                j["chassis"] = c.chassis;
                j["port"] = c.port;
                j["hotplug"] = c.hotplug;
                if (c.bus_reserve) j["bus-reserve"] = c.bus_reserve;
                if (c.io_reserve_zero) j["io-reserve"] = 0;
            }
            json("-device", j);
        }
    }

    void pci_placement(Json& j, const Device& d) {
        j["bus"] = d.parent;
        j["addr"] = hex(d.slot);
    }

    void device(const Device& d) {
        switch (d.kind) {
            case DeviceKind::disk:
                return disk(d, spec_.disks[static_cast<size_t>(d.spec_index)]);
            case DeviceKind::interface:
                return nic(d, spec_.interfaces[static_cast<size_t>(d.spec_index)]);
            case DeviceKind::hostdev: {
                Json j{{"driver", d.driver}, {"id", d.id}};
                j["host"] = spec::to_string(
                    spec_.host_devices[static_cast<size_t>(d.spec_index)].host_address);
                pci_placement(j, d);
                return json("-device", j);
            }
            case DeviceKind::filesystem:
                return filesystem(d, spec_.filesystems[static_cast<size_t>(d.spec_index)]);
            case DeviceKind::controller:
            case DeviceKind::system:
                return builtin(d);
        }
    }

    // The share's virtiofsd listens on a socket in its folder (launcher/helper_plan.cpp).
    void filesystem(const Device& d, const spec::Filesystem& fs) {
        arg("-chardev",
            fmt::format("socket,id={},path={}", detail::virtiofs_chardev(fs.name),
                        qemu_opts_escape(detail::virtiofsd_socket(state_dir(), fs.name))));
        Json j{{"driver", d.driver},
               {"id", d.id},
               {"chardev", detail::virtiofs_chardev(fs.name)},
               {"tag", fs.tag}};
        pci_placement(j, d);
        json("-device", j);
    }

    void disk(const Device& d, const spec::Disk& disk) {
        if (disk.vhost_user()) {
            const std::string socket = disk.storage_daemon
                                           ? detail::storage_daemon_socket(state_dir(), disk.name)
                                           : disk.vhost_user_socket;
            // -chardev has no JSON form in QEMU 7.2: the path is escaped for its key=value.
            arg("-chardev",
                fmt::format("socket,id={},path={}", detail::vhost_user_chardev(disk.name),
                            qemu_opts_escape(socket)));
            Json j = detail::disk_device(d, disk);
            if (disk.storage_daemon) j["num-queues"] = detail::vhost_user_queues(spec_);
            return json("-device", j);
        }
        if (disk.ephemeral) {
            for (const auto& node :
                 detail::ephemeral_blockdevs(disk, detail::overlay_path(state_dir(), disk.name)))
                json("-blockdev", node);
        } else if (disk.no_medium()) {
            // An empty cdrom drive: QEMU gives the device a BlockBackend of its own, without a
            // medium, for blockdev-insert-medium to fill.
        } else if (disk.blank() || disk.from_folder()) {
            spec::Disk made = disk;  // the image qshim makes in the state directory
            made.path = disk.blank() ? detail::blank_path(state_dir(), disk.name)
                                     : detail::folder_image_path(state_dir(), disk.name);
            made.format = disk.blank() ? spec::DiskFormat::qcow2 : spec::DiskFormat::raw;
            for (const auto& node : detail::disk_blockdevs(made)) json("-blockdev", node);
        } else {
            for (const auto& node : detail::disk_blockdevs(disk)) json("-blockdev", node);
        }
        json("-device", detail::disk_device(d, disk));
    }

    void nic(const Device& d, const spec::Interface& nic) {
        std::optional<int> fd;
        if (nic.backend.tap_fd)
            fd = inherit(*nic.backend.tap_fd,
                         fmt::format("interfaces[{}] ({}): tap", d.spec_index, nic.name));
        json("-netdev", detail::netdev(nic, fd, detail::passt_socket(state_dir(), nic.name)));
        json("-device", detail::nic_device(d, nic));
    }

    void builtin(const Device& d) {
        if (d.driver == "virtio-rng-pci")
            json("-object",
                 Json{{"qom-type", "rng-random"}, {"id", "rng.src"}, {"filename", "/dev/urandom"}});
        if (d.id == "cloudinit.0") {
            // The seed qshim wrote into the state directory; read-only for the guest too.
            json("-blockdev", Json{{"driver", "file"},
                                   {"filename", detail::seed_path(state_dir())},
                                   {"node-name", "seed.file"},
                                   {"read-only", true}});
            json("-blockdev", Json{{"driver", "raw"},
                                   {"file", "seed.file"},
                                   {"node-name", "seed"},
                                   {"read-only", true}});
        }
        Json j{{"driver", d.driver}, {"id", d.id}};
        pci_placement(j, d);
        if (d.driver == "virtio-rng-pci") j["rng"] = "rng.src";
        if (d.id == "cloudinit.0") {
            j["drive"] = "seed";
            j["serial"] = d.serial;
        }
        if (d.driver == "virtio-scsi-pci")
            for (const auto& disk : spec_.disks)
                if (disk.bus == spec::DiskBus::scsi && disk.iothread) {
                    j["iothread"] = detail::iothread_id(*disk.iothread);
                    break;
                }
        json("-device", j);
        if (d.driver == "virtio-serial-pci") {
            arg("-chardev", fmt::format("socket,id=qga.0,path={},server=on,wait=off",
                                        qemu_opts_escape(spec_.devices.guest_agent)));
            json("-device", Json{{"driver", "virtserialport"},
                                 {"id", "qga.port"},
                                 {"bus", "vserial.0.0"},
                                 {"chardev", "qga.0"},
                                 {"name", "org.qemu.guest_agent.0"}});
        }
    }

    bool has_boot_order() const {
        for (const auto& d : spec_.disks)
            if (d.boot_order) return true;
        for (const auto& i : spec_.interfaces)
            if (i.boot_order) return true;
        return false;
    }

    const spec::VmSpec& spec_;
    const topology::Topology& topo_;
    const CommandOptions& options_;
    std::vector<std::string> argv_;
    std::vector<InheritedFd> fds_;
};

}  // namespace

std::string qemu_opts_escape(std::string_view value) {
    std::string out;
    for (char c : value) {
        out += c;
        if (c == ',') out += ',';
    }
    return out;
}

std::string format_node_name(std::string_view disk_name) { return node_name('b', disk_name); }
std::string file_node_name(std::string_view disk_name) { return node_name('f', disk_name); }
std::string image_node_name(std::string_view disk_name) { return node_name('i', disk_name); }
std::string overlay_node_name(std::string_view disk_name) { return node_name('o', disk_name); }
std::string media_node_name(std::string_view disk_name) { return node_name('m', disk_name); }

std::string default_state_dir(const spec::VmSpec& spec) {
    std::string base = spec.base_dir.empty() ? std::string(".") : spec.base_dir;
    return fmt::format("{}/.qshim/{}", base, spec.name);
}

bool needs_state_dir(const spec::VmSpec& spec) { return detail::needs_state(spec); }
std::string netdev_id(std::string_view interface_name) {
    return fmt::format("net.{}", interface_name);
}

Result<CommandLine> build_command(const spec::VmSpec& spec, const topology::Topology& topology,
                                  const CommandOptions& options) {
    try {
        return ArgvBuilder(spec, topology, options).build();
    } catch (const nlohmann::json::exception& e) {
        // A spec loaded from a file has valid UTF-8 everywhere; one built in code may not, and
        // nlohmann refuses to write it.
        return make_error(Errc::invalid_spec,
                          std::string("a value cannot be written as JSON: ") + e.what(),
                          "building the QEMU command line for " + spec.name);
    }
}

}  // namespace qshim::launcher
