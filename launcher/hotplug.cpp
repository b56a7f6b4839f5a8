// Hotplug: validate, place in the first free reserved port, backend then device, roll back on
// failure.
#include "launcher/hotplug.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <qshim/launcher.hpp>
#include <qshim/log.hpp>

#include "common/spawn.hpp"
#include "launcher/device_json.hpp"
#include "launcher/preflight.hpp"

namespace qshim::launcher::detail {

namespace asio = boost::asio;
using topology::Device;
using topology::DeviceKind;

namespace {

constexpr auto token = asio::as_tuple(asio::use_awaitable);

bool on_scsi(const Device& d) { return d.kind == DeviceKind::disk && d.parent == "scsi.0.0"; }
// A root port with hotplug on: the disks and interfaces regions' ports, every libvirt-layout port.
bool on_hotplug_port(const topology::Topology& topo, const Device& d) {
    return std::any_of(topo.controllers.begin(), topo.controllers.end(), [&d](const auto& c) {
        return c.id == d.parent && c.model == "pcie-root-port" && c.hotplug;
    });
}
// What can be unplugged: disks and NICs on hotplug ports, and the LUNs of the virtio-scsi
// controller. Built-in devices (the seed, rng, ...) stay, whatever port they sit on.
bool unpluggable(const topology::Topology& topo, const Device& d) {
    return on_scsi(d) || ((d.kind == DeviceKind::disk || d.kind == DeviceKind::interface) &&
                          d.spec_index >= 0 && on_hotplug_port(topo, d));
}

bool has_scsi_controller(const topology::Topology& topo) {
    return std::any_of(topo.devices.begin(), topo.devices.end(),
                       [](const Device& d) { return d.driver == "virtio-scsi-pci"; });
}

// hotplug.<class> = ports the class has minus devices using them: planning the live spec then
// creates exactly the ports that exist, however devices came and went.
void refresh_hotplug_counts(spec::VmSpec& spec, const topology::Topology& topo) {
    unsigned disk_ports = 0, nic_ports = 0, disks = 0, nics = 0;
    for (const auto& c : topo.controllers) {
        disk_ports += c.region == "disks";
        nic_ports += c.region == "interfaces";
    }
    for (const auto& d : spec.disks) disks += d.bus == spec::DiskBus::virtio;
    for (const auto& n : spec.interfaces) nics += n.model != spec::NicModel::e1000;
    spec.hotplug.disks = disk_ports - disks;
    spec.hotplug.interfaces = nic_ports - nics;
    // The controller stays when its last scsi disk goes: QEMU keeps it.
    spec.hotplug.scsi = has_scsi_controller(topo);
}

qmp::Json plain(const Json& ordered) { return qmp::Json::parse(ordered.dump()); }

qmp::Json one(const char* key, const std::string& value) {
    qmp::Json j = qmp::Json::object();
    j[key] = value;
    return j;
}

Error field_error(std::string path, std::string reason, const std::string& context) {
    Error e = make_error(Errc::invalid_spec, path + ": " + reason, context);
    e.diagnostics.push_back({"request body", 0, 0, std::move(path), std::move(reason)});
    return e;
}

const std::string refused_device = "QEMU refused the device";

Stray block_node(std::string id) { return Stray{Stray::Kind::block_node, std::move(id), {}}; }
Stray netdev_object(std::string id) { return Stray{Stray::Kind::netdev, std::move(id), {}}; }
Stray chardev_object(std::string id) { return Stray{Stray::Kind::chardev, std::move(id), {}}; }

// chardev-add's arguments for a vhost-user disk's connection to its server (QEMU is the client).
qmp::Json vhost_user_chardev_args(const std::string& id, const std::string& socket) {
    qmp::Json addr = {{"type", "unix"}, {"data", {{"path", socket}}}};
    return {{"id", id},
            {"backend", {{"type", "socket"}, {"data", {{"addr", addr}, {"server", false}}}}}};
}
Stray device_at(const Device& d) {
    // A LUN holds no hotplug port: only a PCIe device can keep one from the next plug.
    return Stray{Stray::Kind::device, d.id,
                 on_scsi(d) ? std::nullopt : std::optional<spec::PciAddress>(d.address)};
}

bool busy(const Error& e) {
    // Native PCIe hotplug refuses device_del while the slot's power indicator blinks, right
    // after a plug: "guest is busy (power indicator blinking)".
    return e.code == Errc::qmp && e.message.find("busy") != std::string::npos;
}

}  // namespace

LiveState make_live_state(const spec::VmSpec& spec, const topology::Topology& topo) {
    LiveState live{topology::resolve(spec, topo), topo, {}, {}};
    refresh_hotplug_counts(live.spec, topo);
    return live;
}

Hotplug::Hotplug(asio::any_io_executor ex, qmp::Client& qmp, LiveState& live, Emit emit,
                 CanChange can_change, std::function<std::shared_ptr<void>()> anchor)
    : ex_(ex),
      qmp_(qmp),
      live_(live),
      emit_(std::move(emit)),
      can_change_(std::move(can_change)),
      anchor_(std::move(anchor)),
      mutex_(ex) {}

Result<void> Hotplug::check_new_name(const std::string& name,
                                     const std::vector<std::string>& qemu_ids) const {
    const auto& s = live_.spec;
    bool taken =
        std::any_of(s.disks.begin(), s.disks.end(), [&](auto& d) { return d.name == name; }) ||
        std::any_of(s.interfaces.begin(), s.interfaces.end(),
                    [&](auto& i) { return i.name == name; }) ||
        std::any_of(s.host_devices.begin(), s.host_devices.end(),
                    [&](auto& h) { return h.name == name; }) ||
        std::any_of(s.filesystems.begin(), s.filesystems.end(),
                    [&](auto& f) { return f.name == name; });
    if (taken)
        return make_error(Errc::conflict, fmt::format("a device named '{}' already exists", name));
    // An earlier change that failed may have left QEMU holding this name's objects.
    for (const auto& stray : live_.strays)
        if (std::find(qemu_ids.begin(), qemu_ids.end(), stray.id) != qemu_ids.end())
            return make_error(Errc::conflict,
                              fmt::format("QEMU still holds {} from an earlier change that "
                                          "failed; it is removed when QEMU lets it go",
                                          to_string(stray)));
    return {};
}

Result<topology::Topology> Hotplug::plan_candidate(spec::VmSpec& candidate) const {
    refresh_hotplug_counts(candidate, live_.topology);
    auto planned = topology::plan(candidate);
    if (!planned)
        return make_error(Errc::internal,
                          "the live spec no longer plans: " + planned.error().what());
    // Hotplug adds a device, never a port: anything else would be a bug in the live state.
    if (planned->controllers.size() != live_.topology.controllers.size())
        return make_error(Errc::internal, "hotplug would change the set of root ports");
    return planned;
}

Result<Hotplug::Plan> Hotplug::place(
    const std::string& cls, const std::optional<spec::PciAddress>& wanted,
    const std::function<void(spec::VmSpec&, const spec::PciAddress&)>& add) {
    std::vector<const topology::HotplugPort*> free;
    for (const auto& p : live_.topology.hotplug_ports) {
        // A device left behind by a failed change may still sit in the port.
        bool held = std::any_of(live_.strays.begin(), live_.strays.end(),
                                [&](const Stray& s) { return s.address == p.address; });
        if (p.cls == cls && !held) free.push_back(&p);
    }
    if (free.empty())
        return make_error(Errc::conflict,
                          fmt::format("no free hotplug port for {}: every reserved port is in use "
                                      "(reserve more with hotplug.{} in the spec)",
                                      cls, cls));
    const topology::HotplugPort* port = free.front();
    if (wanted) {
        auto it =
            std::find_if(free.begin(), free.end(), [&](auto* p) { return p->address == *wanted; });
        if (it == free.end()) {
            std::string list;
            for (auto* p : free) list += (list.empty() ? "" : ", ") + spec::to_string(p->address);
            return make_error(Errc::conflict,
                              fmt::format("pciAddress {} is not a free {} hotplug port (free: {})",
                                          spec::to_string(*wanted), cls, list));
        }
        port = *it;
    }
    spec::VmSpec candidate = live_.spec;
    add(candidate, port->address);
    auto planned = plan_candidate(candidate);
    if (!planned) return Error(planned.error());
    for (const auto& d : planned->devices)
        if (d.address == port->address && d.spec_index >= 0)
            return Plan{std::move(candidate), std::move(*planned), d};
    return make_error(Errc::internal, "the planned device is not at its port");
}

Result<Hotplug::Plan> Hotplug::place_lun(const spec::Disk& disk) {
    unsigned used = 0;
    for (const auto& d : live_.topology.devices) {
        if (!on_scsi(d)) continue;
        ++used;
        if (disk.lun && d.unit == disk.lun)
            return make_error(Errc::conflict,
                              fmt::format("LUN {} is taken by disk {}", *disk.lun, d.name));
    }
    if (used >= spec::max_scsi_luns)
        return make_error(Errc::conflict, fmt::format("every one of the SCSI controller's {} LUNs "
                                                      "is in use",
                                                      spec::max_scsi_luns));
    spec::VmSpec candidate = live_.spec;
    candidate.disks.push_back(disk);
    auto planned = plan_candidate(candidate);
    if (!planned) return Error(planned.error());
    const Device* placed = planned->find_device(disk.name, DeviceKind::disk);
    if (!placed || !placed->unit) return make_error(Errc::internal, "the planned disk has no LUN");
    candidate.disks.back().lun = placed->unit;  // written down: it never moves
    Device device = *placed;
    return Plan{std::move(candidate), std::move(*planned), std::move(device)};
}

Device Hotplug::commit(Plan plan) {
    live_.spec = std::move(plan.spec);
    live_.topology = std::move(plan.topology);
    emit_("device-added", {{"kind", to_string(plan.device.kind)},
                           {"name", plan.device.name},
                           {"address", spec::to_string(plan.device.address)}});
    return plan.device;
}

asio::awaitable<Result<Device>> Hotplug::add_disk(spec::Disk disk) {
    auto turn = co_await mutex_.lock();
    const std::string context = "hot-plugging disk " + disk.name;
    if (auto ok = can_change_(); !ok) co_return Error(ok.error());
    co_await reconcile();
    if (disk.bus == spec::DiskBus::sata)
        co_return field_error(
            "bus", "q35's AHCI ports cannot be hot-plugged; use bus virtio or scsi", context);
    if (disk.bus == spec::DiskBus::scsi && !has_scsi_controller(live_.topology))
        co_return make_error(Errc::conflict,
                             "this VM has no SCSI controller to plug the disk into; start it "
                             "with hotplug.scsi: true (or a scsi disk) to hot-plug scsi disks",
                             context);
    const std::string file = file_node_name(disk.name), format = format_node_name(disk.name);
    const std::vector<std::string> qemu_ids{disk.name, file, format};
    if (auto ok = check_new_name(disk.name, qemu_ids); !ok) co_return Error(ok.error());
    for (const auto& d : live_.spec.disks)
        if (d.serial == disk.serial)
            co_return make_error(
                Errc::conflict,
                fmt::format("serial '{}' is already used by disk {}", disk.serial, d.name),
                context);
    if (disk.vhost_user()) {
        // The server maps guest RAM: only RAM that is a shared memfd from the start will do.
        if (!shares_memory(live_.spec))
            co_return make_error(Errc::conflict,
                                 "guest RAM is not shared memory, which a vhost-user disk's server "
                                 "must map; start the VM with memory.shared: true (or a vhost-user "
                                 "device in its spec) to hot-plug vhost-user disks",
                                 context);
        if (!disk.vhost_user_socket.empty())
            if (auto why = vhost_user_socket_problem(disk.vhost_user_socket); !why.empty())
                co_return field_error("backend.socket", disk.vhost_user_socket + ": " + why,
                                      context);
    }
    if (!disk.no_medium() && disk.vhost_user_socket.empty())
        if (auto why = disk_file_problem(disk, qemu_); !why.empty())
            co_return field_error("path", disk.path + ": " + why, context);
    auto plan =
        disk.bus == spec::DiskBus::scsi
            ? place_lun(disk)
            : place("disks", disk.pci_address, [&disk](spec::VmSpec& s, const spec::PciAddress& a) {
                  s.disks.push_back(disk);
                  s.disks.back().pci_address = a;
              });
    if (!plan) co_return Error(plan.error());

    if (disk.vhost_user())
        co_return co_await add_vhost_user_disk(std::move(disk), std::move(*plan));

    // Backend first, then the device; on failure undo what was done, newest first. (Every
    // argument is a named value: g++ 12 destroys braced temporaries in a co_await twice.)
    auto nodes = disk_blockdevs(disk);
    const Stray file_node = block_node(file), format_node = block_node(format);
    const Stray device = device_at(plan->device);
    const std::string cannot_open = "QEMU cannot open " + disk.path;
    const std::string cannot_read =
        fmt::format("QEMU cannot read {} as {}", disk.path, spec::to_string(disk.format));
    const qmp::Json file_args = plain(nodes[0]), format_args = plain(nodes[1]);
    const qmp::Json device_args = plain(disk_device(plan->device, disk));
    std::vector<Step> done;
    Result<void> r;
    if (!disk.no_medium()) {  // an empty cdrom drive has no nodes
        r = co_await forward(done, "blockdev-add", file_args, file_node, cannot_open, context);
        if (r)
            r = co_await forward(done, "blockdev-add", format_args, format_node, cannot_read,
                                 context);
    }
    if (r) r = co_await forward(done, "device_add", device_args, device, refused_device, context);
    if (!r) co_return Error(r.error());
    co_return commit(std::move(*plan));
}

// Holds the turn (add_disk's). The server first (a storageDaemon disk's qemu-storage-daemon,
// started and listening), then QEMU's connection to it (chardev-add), then the device.
asio::awaitable<Result<Device>> Hotplug::add_vhost_user_disk(spec::Disk disk, Plan plan) {
    const std::string context = "hot-plugging disk " + disk.name;
    std::string socket = disk.vhost_user_socket;
    if (disk.storage_daemon) {
        if (!helpers_.start) co_return make_error(Errc::internal, "no helper host", context);
        auto started = co_await helpers_.start(disk);
        if (!started) {
            Error e = std::move(started).error();
            e.context = context;
            co_return e;
        }
        socket = *started;
    }
    const std::string chardev = vhost_user_chardev(disk.name);
    const qmp::Json chardev_args = vhost_user_chardev_args(chardev, socket);
    Json device = disk_device(plan.device, disk);
    if (disk.storage_daemon) device["num-queues"] = vhost_user_queues(live_.spec);
    const qmp::Json device_args = plain(device);
    const Stray connection = chardev_object(chardev), added = device_at(plan.device);
    const std::string refused_chardev = "QEMU cannot connect to " + socket;
    std::vector<Step> done;
    auto r =
        co_await forward(done, "chardev-add", chardev_args, connection, refused_chardev, context);
    if (r) r = co_await forward(done, "device_add", device_args, added, refused_device, context);
    if (!r) {
        if (disk.storage_daemon) co_await helpers_.stop(disk.name);
        co_return Error(r.error());
    }
    co_return commit(std::move(plan));
}

asio::awaitable<Result<Device>> Hotplug::add_interface(spec::Interface nic) {
    auto turn = co_await mutex_.lock();
    const std::string context = "hot-plugging interface " + nic.name;
    if (auto ok = can_change_(); !ok) co_return Error(ok.error());
    co_await reconcile();
    if (nic.model == spec::NicModel::e1000)
        co_return field_error("model",
                              "e1000 NICs sit behind the PCI bridge and cannot be hot-plugged; use "
                              "virtio or e1000e",
                              context);
    if (nic.backend.tap_fd)
        co_return field_error(
            "backend.fd",
            "an fd cannot be handed over through the API; use a tap name or a stream socket",
            context);
    if (nic.backend.type == spec::BackendType::stream &&
        access(nic.backend.socket.c_str(), F_OK) != 0)
        co_return field_error("backend.socket", nic.backend.socket + ": no such socket", context);
    const std::string backend_id = netdev_id(nic.name);
    const std::vector<std::string> qemu_ids{nic.name, backend_id};
    if (auto ok = check_new_name(nic.name, qemu_ids); !ok) co_return Error(ok.error());
    for (const auto& i : live_.spec.interfaces)
        if (i.mac == nic.mac)
            co_return make_error(Errc::conflict,
                                 fmt::format("MAC {} is already used by interface {}",
                                             spec::to_string(nic.mac), i.name),
                                 context);
    auto plan =
        place("interfaces", nic.pci_address, [&nic](spec::VmSpec& s, const spec::PciAddress& a) {
            s.interfaces.push_back(nic);
            s.interfaces.back().pci_address = a;
            s.interfaces.back().mac_explicit = true;
        });
    if (!plan) co_return Error(plan.error());

    const Stray backend = netdev_object(backend_id), device = device_at(plan->device);
    const std::string refused_backend = "QEMU refused the network backend";
    const qmp::Json backend_args = plain(netdev(nic));
    const qmp::Json device_args = plain(nic_device(plan->device, nic));
    std::vector<Step> done;
    auto r = co_await forward(done, "netdev_add", backend_args, backend, refused_backend, context);
    if (r) r = co_await forward(done, "device_add", device_args, device, refused_device, context);
    if (!r) co_return Error(r.error());
    co_return commit(std::move(*plan));
}

asio::awaitable<Result<void>> Hotplug::remove(DeviceKind kind, std::string name,
                                              std::chrono::milliseconds timeout) {
    const std::string key = fmt::format("{}/{}", to_string(kind), name);
    const std::string context = fmt::format("unplugging {} {}", to_string(kind), name);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::shared_ptr<qshim::detail::AsyncEvent> done;
    while (!done) {
        bool busy_slot = false;
        {
            auto turn = co_await mutex_.lock();
            if (auto ok = can_change_(); !ok) co_return Error(ok.error());
            co_await reconcile();
            const Device* found = live_.topology.find_device(name, kind);
            if (!found || found->spec_index < 0)
                co_return make_error(Errc::not_found,
                                     fmt::format("no {} named '{}'", to_string(kind), name),
                                     context);
            if (!unpluggable(live_.topology, *found))
                co_return make_error(Errc::unsupported,
                                     "only virtio and scsi disks and virtio/e1000e NICs can be "
                                     "unplugged (sata disks and e1000 NICs cannot)",
                                     context);
            const Device device = *found;
            const auto pending = live_.removing.find(key);
            // Subscribe before device_del, so the event cannot slip past.
            auto deleted = pending == live_.removing.end() ? listen_deleted(device.id) : nullptr;
            // A retry asks again too: an earlier device_del may never have reached QEMU (it timed
            // out in our queue) or have been refused after its deadline.
            const qmp::Json arguments = one("id", device.id);
            auto r = co_await qmp_.execute("device_del", arguments);
            if (!r && r.error().qmp_class == "DeviceNotFound") {
                // Already gone (the guest ejected it, or an earlier device_del completed while
                // nobody listened): finish the removal now.
                co_await complete_removal(device);
                co_return Result<void>{};
            }
            if (pending != live_.removing.end()) {
                done = pending->second;  // keep waiting for the same release
                break;
            }
            // No answer (a timeout) may still be an accepted device_del: keep listening, so a
            // late release completes the removal instead of leaving a device QEMU no longer has.
            bool accepted = r || r.error().code == Errc::timeout;
            if (accepted) {
                done = std::make_shared<qshim::detail::AsyncEvent>(ex_);
                live_.removing[key] = done;
                nlohmann::json data = {{"kind", to_string(kind)}, {"name", name}};
                emit_("device-removing", data);
                qshim::detail::spawn(ex_,
                                     finish_removal(anchor_(), key, device, std::move(deleted)),
                                     "finishing an unplug");
                if (!r) {
                    Error e = std::move(r).error();
                    e.context = context;
                    e.message += "; the device stays listed as removing until QEMU reports it gone";
                    co_return e;
                }
            } else if (busy(r.error()) && std::chrono::steady_clock::now() < deadline) {
                busy_slot = true;
            } else {
                Error e = std::move(r).error();
                e.context = context;
                co_return e;
            }
        }
        if (busy_slot) {
            // The slot accepts device_del once the guest has finished powering it on; there is
            // no event for that, so retry shortly within the deadline, not holding the lock
            // (a resume may be what the guest needs).
            asio::steady_timer pause(ex_, std::chrono::milliseconds(100));
            co_await pause.async_wait(token);
        }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    const bool released = co_await done->wait(std::max(left, std::chrono::milliseconds(0)));
    Result<void> result;
    if (!released)
        result =
            make_error(Errc::timeout,
                       fmt::format("the guest did not release it within {} ms; it stays listed "
                                   "as removing and goes when the guest lets go",
                                   timeout.count()),
                       context);
    else if (live_.has_device(kind, name))  // the wait ended without a release: QEMU went
        result =
            make_error(Errc::state, "the VM stopped before the guest released the device", context);
    co_return result;
}

std::shared_ptr<qmp::EventListener> Hotplug::listen_deleted(const std::string& id) {
    qmp::EventFilter filter;
    filter.names = {"DEVICE_DELETED"};
    filter.predicate = [id](const qmp::Event& e) {
        return e.data.is_object() && e.data.value("device", std::string()) == id;
    };
    return qmp_.listen(std::move(filter), 4);
}

asio::awaitable<void> Hotplug::finish_removal(std::shared_ptr<void> anchor, std::string key,
                                              Device device,
                                              std::shared_ptr<qmp::EventListener> deleted) {
    (void)anchor;  // keeps our owner, and so this object, alive until we are done
    auto e = co_await qmp::wait_event(
        *deleted, [](const qmp::Event&) { return true; }, std::chrono::hours(24 * 365));
    if (e) {
        auto turn = co_await mutex_.lock();
        // Unless a retry found it gone first and finished the removal already.
        if (live_.removing.count(key)) co_await complete_removal(device);
    } else if (auto it = live_.removing.find(key); it != live_.removing.end()) {
        // The connection ended: no release can be seen any more. Whoever waits must not wait
        // for it (the device stays in the live spec: nobody knows whether QEMU still has it).
        auto waiting = it->second;
        live_.removing.erase(it);
        waiting->set();
    }
}

void Hotplug::device_deleted(const std::string& id) {
    // Only a hot-plugged device that nobody is removing: the guest ejected it by itself.
    for (const auto& d : live_.topology.devices) {
        if (d.id != id || d.spec_index < 0 || !unpluggable(live_.topology, d)) continue;
        if (live_.removing.count(fmt::format("{}/{}", to_string(d.kind), d.name))) return;
        qshim::detail::spawn(
            ex_,
            [](std::shared_ptr<void> anchor, Hotplug* self,
               Device device) -> asio::awaitable<void> {
                (void)anchor;
                auto turn = co_await self->mutex_.lock();
                if (self->live_.topology.find_device(device.name, device.kind))
                    co_await self->complete_removal(device);
            }(anchor_(), this, d),
            "finishing an unplug the guest made");
        return;
    }
}

asio::awaitable<void> Hotplug::complete_removal(Device device) {
    // The device is gone: now its backend can go too. What QEMU does not confirm gone is a stray.
    std::vector<Stray> backends;
    bool storage_daemon = false;
    if (device.kind == DeviceKind::disk) {
        // Top node first: a node goes only once nothing uses it. Nodes the disk never had are
        // "already gone" to remove_object.
        auto& disks = live_.spec.disks;
        auto it = std::find_if(disks.begin(), disks.end(),
                               [&](const spec::Disk& d) { return d.name == device.name; });
        const bool ephemeral = it != disks.end() && it->ephemeral;
        const bool cdrom = it != disks.end() && it->device == spec::DiskDevice::cdrom;
        const bool vhost_user = it != disks.end() && it->vhost_user();
        storage_daemon = it != disks.end() && it->storage_daemon;
        if (vhost_user) {  // QEMU opened no image: its server holds it
            backends.push_back(chardev_object(vhost_user_chardev(device.name)));
        } else {
            if (cdrom) backends.push_back(block_node(media_node_name(device.name)));
            backends.push_back(block_node(format_node_name(device.name)));
            if (ephemeral) {
                backends.push_back(block_node(overlay_node_name(device.name)));
                backends.push_back(block_node(image_node_name(device.name)));
            }
            backends.push_back(block_node(file_node_name(device.name)));
        }
    } else {
        backends.push_back(netdev_object(netdev_id(device.name)));
    }
    std::vector<Stray> left;
    std::string cause;
    for (auto& b : backends) {
        std::string why;
        if (co_await remove_object(b, why)) continue;
        log::write("hotplug", log::Level::warn,
                   "removing the backend of " + device.name + ": " + why);
        if (cause.empty()) cause = why;
        left.push_back(std::move(b));
    }
    auto& s = live_.spec;
    if (device.kind == DeviceKind::disk)
        s.disks.erase(std::remove_if(s.disks.begin(), s.disks.end(),
                                     [&](auto& d) { return d.name == device.name; }),
                      s.disks.end());
    else
        s.interfaces.erase(std::remove_if(s.interfaces.begin(), s.interfaces.end(),
                                          [&](auto& i) { return i.name == device.name; }),
                           s.interfaces.end());
    refresh_hotplug_counts(s, live_.topology);
    if (auto planned = topology::plan(s))
        live_.topology = std::move(*planned);
    else
        log::write("hotplug", log::Level::error,
                   "the live spec no longer plans: " + planned.error().what());
    if (!left.empty())
        report_strays(std::move(left), "removing the backend of " + device.name, cause);
    // Its server goes once QEMU has let go of it (the spec's own disks' servers too: their
    // device is gone, and the VM's end would stop them anyway).
    if (storage_daemon && helpers_.stop) co_await helpers_.stop(device.name);
    const std::string key = fmt::format("{}/{}", to_string(device.kind), device.name);
    auto done = live_.removing[key];
    live_.removing.erase(key);
    nlohmann::json data = {{"kind", to_string(device.kind)}, {"name", device.name}};
    emit_("device-removed", data);
    if (done) done->set();
}

}  // namespace qshim::launcher::detail
