// A cdrom's disc changed while the VM runs: new node, open tray, old disc out, new disc in, close.
#include <fmt/format.h>

#include <qshim/launcher.hpp>
#include <qshim/log.hpp>

#include "launcher/device_json.hpp"
#include "launcher/hotplug.hpp"
#include "launcher/preflight.hpp"

namespace qshim::launcher::detail {

namespace asio = boost::asio;
using topology::Device;
using topology::DeviceKind;

namespace {

qmp::Json id_only(const std::string& id) {
    qmp::Json j = qmp::Json::object();
    j["id"] = id;
    return j;
}

// What query-block says of the drive of device `id`.
struct Drive {
    bool tray_open = false;
    bool locked = false;  // the guest forbids removal (a Linux guest does while sr0 is open)
    std::string node;     // the disc's node; empty: no disc
};

std::optional<Drive> drive_of(const qmp::Json& blocks, const std::string& id) {
    if (!blocks.is_array()) return std::nullopt;
    for (const auto& b : blocks) {
        // A device with an id is named by it ("cd"), anything else by its QOM path.
        const std::string qdev = b.is_object() ? b.value("qdev", std::string()) : std::string();
        if (qdev != id && qdev != "/machine/peripheral/" + id) continue;
        Drive d;
        d.tray_open = b.value("tray_open", false);
        d.locked = b.value("locked", false);
        if (b.contains("inserted") && b["inserted"].is_object())
            d.node = b["inserted"].value("node-name", std::string());
        return d;
    }
    return std::nullopt;
}

Error in_context(Error e, const std::string& context) {
    e.context = context;
    return e;
}

}  // namespace

asio::awaitable<Result<void>> Hotplug::open_tray(const std::string& id, bool force,
                                                 std::chrono::milliseconds wait,
                                                 const std::string& context) {
    // Subscribed before the command: QEMU sends DEVICE_TRAY_MOVED before its answer when the
    // tray opens at once (unlocked, or forced).
    qmp::EventFilter filter;
    filter.names = {"DEVICE_TRAY_MOVED"};
    filter.predicate = [id](const qmp::Event& e) {
        return e.data.is_object() && e.data.value("id", std::string()) == id &&
               e.data.value("tray-open", false);
    };
    auto moved = qmp_.listen(std::move(filter), 4);
    qmp::Json arguments = id_only(id);
    arguments["force"] = force;
    // A locked tray is not an error to QEMU 7.2: it asks the guest to eject and answers success.
    auto r = co_await qmp_.execute("blockdev-open-tray", arguments);
    if (!r) co_return in_context(std::move(r).error(), context);
    const std::function<bool(const qmp::Event&)> any = [](const qmp::Event&) { return true; };
    auto opened = co_await qmp::wait_event(*moved, any, wait);
    if (opened) co_return Result<void>{};
    if (opened.error().code != Errc::timeout) co_return in_context(opened.error(), context);
    co_return make_error(Errc::conflict,
                         fmt::format("the guest keeps the tray locked (a disc in use: mounted, "
                                     "or a program holding the drive) and did not open it when "
                                     "asked within {} ms; release it in the guest and retry, or "
                                     "pass force: true to take the disc away regardless",
                                     wait.count()),
                         context);
}

asio::awaitable<Result<void>> Hotplug::change_medium(std::string name,
                                                     std::optional<spec::Disk> medium, bool force,
                                                     std::chrono::milliseconds tray_wait) {
    auto turn = co_await mutex_.lock();
    const std::string context = medium ? fmt::format("inserting {} into {}", medium->path, name)
                                       : fmt::format("ejecting the disc of {}", name);
    if (auto ok = can_change_(); !ok) co_return Error(ok.error());
    co_await reconcile();
    // Looked up again after every step: the live spec may have grown meanwhile (never while we
    // hold the turn, but a pointer is cheap to renew).
    auto disk = [this, &name]() -> spec::Disk* {
        for (auto& d : live_.spec.disks)
            if (d.name == name) return &d;
        return nullptr;
    };
    if (!disk())
        co_return make_error(Errc::not_found, fmt::format("no disk named '{}'", name), context);
    if (disk()->device != spec::DiskDevice::cdrom)
        co_return make_error(Errc::conflict,
                             fmt::format("disk {} is not a cdrom: only a cdrom's disc changes "
                                         "while the VM runs",
                                         name),
                             context);
    if (medium)
        if (auto why = disk_file_problem(*medium, qemu_); !why.empty()) {
            Error e = make_error(Errc::invalid_spec, "path: " + medium->path + ": " + why, context);
            e.diagnostics.push_back({"request body", 0, 0, "path", medium->path + ": " + why});
            co_return e;
        }
    const Device* device = live_.topology.find_device(name, DeviceKind::disk);
    if (!device)
        co_return make_error(Errc::internal, "the cdrom is not in the live topology", context);
    const std::string id = device->id;

    const qmp::Json no_arguments = qmp::Json::object();
    auto blocks = co_await qmp_.execute("query-block", no_arguments);
    if (!blocks) co_return in_context(std::move(blocks).error(), context);
    const auto drive = drive_of(*blocks, id);
    if (!drive)
        co_return make_error(Errc::internal, "QEMU lists no drive for device " + id, context);
    if (!medium && drive->node.empty() && !drive->tray_open)
        co_return Result<void>{};  // nothing in it: ejecting is done already

    // 1. The new disc's node, before anything changes: a file QEMU cannot read changes nothing.
    //    The name alternates, as the old disc's node still exists.
    std::string node;
    std::vector<Step> added;
    if (medium) {
        node =
            drive->node == media_node_name(name) ? format_node_name(name) : media_node_name(name);
        const qmp::Json arguments = qmp::Json::parse(medium_blockdev(*medium, node).dump());
        const Stray stray{Stray::Kind::block_node, node, {}};
        const std::string cannot_read =
            fmt::format("QEMU cannot read {} as {}", medium->path, spec::to_string(medium->format));
        auto r = co_await forward(added, "blockdev-add", arguments, stray, cannot_read, context);
        if (!r) co_return Error(r.error());
    }

    // 2. The tray, which the guest may hold shut.
    if (!drive->tray_open) {
        auto opened = co_await open_tray(id, force, tray_wait, context);
        if (!opened) {
            co_await roll_back(std::move(added), context);
            co_return Error(opened.error());
        }
    }

    // 3. The old disc out. From here on the live spec says what the drive holds.
    if (!drive->node.empty()) {
        const qmp::Json arguments = id_only(id);
        auto removed = co_await qmp_.execute("blockdev-remove-medium", arguments);
        if (!removed) {
            co_await roll_back(std::move(added), context);
            co_return in_context(std::move(removed).error(), context);
        }
        disk()->path.clear();
        disk()->path_as_written.clear();
        // Its node, and under the name the command line gave it, its file node too.
        std::vector<Stray> left;
        std::string cause;
        std::vector<Stray> old{Stray{Stray::Kind::block_node, drive->node, {}}};
        if (drive->node == format_node_name(name))
            old.push_back(Stray{Stray::Kind::block_node, file_node_name(name), {}});
        for (auto& o : old) {
            std::string why;
            if (co_await remove_object(o, why)) continue;
            if (cause.empty()) cause = why;
            left.push_back(std::move(o));
        }
        if (!left.empty()) report_strays(std::move(left), context, cause);
    }

    // 4. The new disc in, and the tray closed (an ejected drive is left closed and empty, as a
    //    VM started with an empty drive has it).
    if (medium) {
        qmp::Json arguments = id_only(id);
        arguments["node-name"] = node;
        auto inserted = co_await qmp_.execute("blockdev-insert-medium", arguments);
        if (!inserted) {
            co_await roll_back(std::move(added), context);
            Error e = in_context(std::move(inserted).error(), context);
            e.message += "; the drive is empty now";
            emit_("medium-changed", {{"name", name}, {"path", nullptr}});
            co_return e;
        }
        disk()->path = medium->path;
        disk()->path_as_written = medium->path_as_written;
        disk()->format = medium->format;
    }
    const qmp::Json close_arguments = id_only(id);
    if (auto closed = co_await qmp_.execute("blockdev-close-tray", close_arguments); !closed)
        log::write("hotplug", log::Level::warn,
                   context + ": closing the tray: " + closed.error().what());
    emit_("medium-changed",
          {{"name", name},
           {"path", medium ? nlohmann::json(medium->path) : nlohmann::json(nullptr)}});
    co_return Result<void>{};
}

}  // namespace qshim::launcher::detail
