// Hotplug transactions: forward steps, checked rollback, and reconciling what QEMU still holds.
#include <fmt/format.h>

#include <qshim/log.hpp>
#include <set>

#include "launcher/hotplug.hpp"

namespace qshim::launcher::detail {

namespace asio = boost::asio;

namespace {

void warn(const std::string& m) { log::write("hotplug", log::Level::warn, m); }

qmp::Json one(const char* key, const std::string& value) {
    qmp::Json j = qmp::Json::object();
    j[key] = value;
    return j;
}

// QEMU's answers for "there is no such object": the undo has nothing left to do.
bool already_gone(const Error& e) {
    if (e.code != Errc::qmp) return false;
    if (e.qmp_class == "DeviceNotFound") return true;
    // blockdev-del: "Failed to find node with node-name='f.x'" (GenericError).
    return e.message.find("Failed to find node") != std::string::npos ||
           e.message.find("not found") != std::string::npos;
}

// Whether QEMU may have done what a failed command asked: it was sent (or may have been) and
// QEMU did not say no. A command refused before it was sent (no connection, arguments QMP
// cannot carry) did nothing.
bool outcome_unknown(const Error& e) {
    return e.code == Errc::timeout || e.code == Errc::interrupted || e.code == Errc::protocol ||
           e.code == Errc::io;
}

std::set<std::string> names_in(const qmp::Json& list, const char* key) {
    std::set<std::string> out;
    if (!list.is_array()) return out;
    for (const auto& item : list)
        if (item.is_object() && item.contains(key) && item[key].is_string())
            out.insert(item[key].get<std::string>());
    return out;
}

std::set<std::string> child_devices(const qmp::Json& listing) {
    std::set<std::string> out;
    if (!listing.is_array()) return out;
    for (const auto& p : listing)
        if (p.is_object() && p.value("type", std::string()).rfind("child<", 0) == 0)
            out.insert(p.value("name", std::string()));
    return out;
}

}  // namespace

std::string to_string(const Stray& stray) {
    switch (stray.kind) {
        case Stray::Kind::device:
            return "device " + stray.id;
        case Stray::Kind::block_node:
            return "block-node " + stray.id;
        case Stray::Kind::netdev:
            return "netdev " + stray.id;
        case Stray::Kind::chardev:
            return "chardev " + stray.id;
    }
    return stray.id;
}

asio::awaitable<Result<void>> Hotplug::forward(std::vector<Step>& done, const char* command,
                                               qmp::Json arguments, Stray object,
                                               const std::string& what,
                                               const std::string& context) {
    auto r = co_await qmp_.execute(command, std::move(arguments));
    if (r) {
        done.push_back(Step{std::move(object), true});
        co_return Result<void>{};
    }
    Error e = std::move(r).error();
    // No answer (timeout, a broken connection): QEMU may still do it, so it is undone too.
    if (outcome_unknown(e)) done.push_back(Step{std::move(object), false});
    co_await roll_back(std::move(done), context);
    done.clear();
    // QEMU's refusal is an answer about the request, kept with QEMU's class; no answer keeps
    // its own code (timeout 504, interrupted 503 at the API).
    Error out = e;
    out.message = fmt::format("{}: {}", what, e.message);
    out.context = context;
    const bool device = std::string_view(command) == "device_add";
    // QEMU refusing a backend refuses what the request asked for (an image it cannot open);
    // refusing the device at a port qshim planned is qshim's problem, whatever QEMU's class
    // (a missing bus is DeviceNotFound, which must not read as "no such device" to a client).
    if (e.code == Errc::qmp && !device) out.code = Errc::invalid_spec;
    if (e.code == Errc::qmp && device && e.qmp_class == "DeviceNotFound") out.code = Errc::internal;
    co_return out;
}

asio::awaitable<bool> Hotplug::remove_object(const Stray& object, std::string& why) {
    const char* command = object.kind == Stray::Kind::device       ? "device_del"
                          : object.kind == Stray::Kind::block_node ? "blockdev-del"
                          : object.kind == Stray::Kind::chardev    ? "chardev-remove"
                                                                   : "netdev_del";
    const char* key = object.kind == Stray::Kind::block_node ? "node-name" : "id";
    auto r = co_await qmp_.execute(command, one(key, object.id));
    if (!r && already_gone(r.error())) co_return true;
    if (!r) {
        why = fmt::format("{} {}: {}", command, object.id, r.error().what());
        co_return false;
    }
    if (object.kind != Stray::Kind::device) co_return true;
    why = fmt::format("device_del {}: waiting for the guest to release it", object.id);
    co_return false;  // accepted: the device goes when the guest lets go
}

asio::awaitable<void> Hotplug::roll_back(std::vector<Step> done, const std::string& context) {
    std::vector<Stray> left;
    std::string cause;
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
        std::string why;
        if (co_await remove_object(it->object, why)) continue;
        // A device that never answered may not exist: then its removal says "not found" above.
        warn(fmt::format("{}: rolling back: {}", context, why));
        if (cause.empty()) cause = why;
        left.push_back(it->object);
    }
    if (!left.empty()) report_strays(std::move(left), context, cause);
}

void Hotplug::report_strays(std::vector<Stray> added, const std::string& context,
                            const std::string& cause) {
    std::vector<std::string> labels;
    for (auto& s : added) {
        labels.push_back(to_string(s));
        live_.strays.push_back(std::move(s));
    }
    std::vector<std::string> all;
    for (const auto& s : live_.strays) all.push_back(to_string(s));
    std::string list;
    for (const auto& l : labels) list += (list.empty() ? "" : ", ") + l;
    log::write("hotplug", log::Level::error,
               fmt::format("{}: QEMU may still hold {} ({}); the live state no longer matches "
                           "QEMU, and the next change reconciles them",
                           context, list, cause));
    nlohmann::json data = {{"objects", all}, {"context", context}, {"cause", cause}};
    emit_("diverged", std::move(data));
}

asio::awaitable<void> Hotplug::reconcile() {
    if (live_.strays.empty()) co_return;
    // QMP handles commands in order, so these lists include whatever an earlier command that
    // timed out went on to do.
    qmp::Json arguments = qmp::Json::object();
    arguments["path"] = std::string("/machine/peripheral");
    auto listed = co_await qmp_.execute("qom-list", std::move(arguments));
    qmp::Json flat = qmp::Json::object();
    flat["flat"] = true;
    auto nodes = co_await qmp_.execute("query-named-block-nodes", std::move(flat));
    if (!listed || !nodes) {
        warn("reconciling with QEMU: " + (!listed ? listed.error() : nodes.error()).what());
        co_return;
    }
    const auto devices = child_devices(*listed);
    const auto node_names = names_in(*nodes, "node-name");
    std::vector<Stray> left;
    bool device_left = false;
    // Devices first: a node or netdev can only go once the device using it is gone.
    for (const auto& s : live_.strays) {
        if (s.kind != Stray::Kind::device || !devices.count(s.id)) continue;
        std::string why;
        if (!co_await remove_object(s, why)) {
            left.push_back(s);
            device_left = true;
        }
    }
    for (const auto& s : live_.strays) {
        if (s.kind == Stray::Kind::device) continue;
        if (s.kind == Stray::Kind::block_node && !node_names.count(s.id)) continue;
        std::string why;
        if (device_left || !co_await remove_object(s, why)) left.push_back(s);
    }
    const bool changed = left.size() != live_.strays.size();
    live_.strays = std::move(left);
    if (!changed) co_return;
    if (live_.strays.empty()) {
        log::write("hotplug", log::Level::info, "QEMU and the live state agree again");
        emit_("reconciled", nlohmann::json::object());
        co_return;
    }
    std::vector<std::string> all;
    for (const auto& s : live_.strays) all.push_back(to_string(s));
    nlohmann::json data = {{"objects", all},
                           {"context", "reconciling with QEMU"},
                           {"cause", "some objects are still held"}};
    emit_("diverged", std::move(data));
}

}  // namespace qshim::launcher::detail
