// The control API's request/response endpoints: parse the request, call the Vm, render the result.
#include "api/handlers.hpp"

#include <qshim/cgroups.hpp>

#include "api/params.hpp"

namespace qshim::api {

namespace asio = boost::asio;

namespace {

// JSON is built in plain functions, never in a coroutine: g++ 12 miscompiles brace-init lists
// with string literals inside coroutine frames.

Response vm_status(Vm& vm) {
    // A spec built in code (by an embedding program) may not be writable as JSON.
    auto spec = spec::to_json(vm.live_spec());
    if (!spec) return error_response(spec.error());
    Json j;
    j["name"] = vm.spec().name;
    j["state"] = to_string(vm.state());
    j["pid"] = vm.pid();
    // The Vm keeps nlohmann::json; re-parse into the ordered flavour so nested keys keep order.
    j["qemu"] = Json::parse(vm.qemu_version().dump());
    j["removing"] = vm.removing();
    j["diverged"] = vm.diverged();
    j["spec"] = Json::parse(*spec);
    return json_response(200, j);
}

Response topology_json(Vm& vm) {
    auto text = topology::to_json(vm.topology());
    if (!text) return error_response(text.error());
    return Response{200, std::move(*text), {}};
}

Json thread_json(const VmThread& t) {
    Json j;
    j["threadId"] = t.thread_id;
    j["name"] = t.name;
    j["cpus"] = cgroups::to_cpu_list(t.cpus);
    if (!t.planned.empty()) j["planned"] = cgroups::to_cpu_list(t.planned);
    return j;
}

Response cpus_json(Vm& vm) {
    VmCpus cpus = vm.cpus();
    Json j;
    j["placement"] = cpus.placement;
    if (!cpus.error.empty()) j["error"] = cpus.error;
    if (!cpus.cpuset.empty()) j["cpuset"] = cgroups::to_cpu_list(cpus.cpuset);
    auto list = [](const std::vector<VmThread>& threads, const char* key, Json& out) {
        out[key] = Json::array();
        for (const auto& t : threads) out[key].push_back(thread_json(t));
    };
    list(cpus.vcpus, "vcpus", j);
    for (size_t i = 0; i < cpus.vcpus.size(); ++i) {
        // The vCPU's index first, where a reader looks for it.
        Json entry;
        entry["index"] = i;
        entry.update(j["vcpus"][i]);
        j["vcpus"][i] = entry;
    }
    list(cpus.iothreads, "iothreads", j);
    list(cpus.emulator, "emulator", j);
    return json_response(200, j);
}

Json state_json(Vm& vm) {
    Json j;
    j["state"] = to_string(vm.state());
    return j;
}

Json stopping_json() {
    Json j;
    j["state"] = "stopping";
    return j;
}

Json removed_json(const std::string& name) {
    Json j;
    j["removed"] = name;
    return j;
}

// A removal that timed out left the device half-gone: say which devices are still leaving, so a
// client can see the state it is in without another request.
Response removal_error(Vm& vm, const Error& error) {
    Json body = error_body(error);
    if (error.code == Errc::timeout) body["error"]["removing"] = vm.removing();
    return json_response(http_status(error), body);
}

template <typename Parse, typename Add>
asio::awaitable<Response> add_device(Vm& vm, const std::string& body, Parse parse, Add add) {
    auto device = parse(body, vm.live_spec());
    if (!device) co_return error_response(device.error());
    auto placed = co_await add(std::move(device).value());
    if (!placed) co_return error_response(placed.error());
    co_return device_response(*placed);
}

template <typename Remove>
asio::awaitable<Response> remove_device(Vm& vm, const Route& route, Remove remove) {
    Timeout timeout = timeout_param(route);
    if (timeout.error) co_return *timeout.error;
    auto removed = co_await remove(route.name, timeout.value);
    if (!removed) co_return removal_error(vm, removed.error());
    co_return json_response(200, removed_json(route.name));
}

template <typename Call>
asio::awaitable<Response> change_state(Vm& vm, Call call) {
    auto done = co_await call();
    if (!done) co_return error_response(done.error());
    co_return json_response(200, state_json(vm));
}

Response shutdown(Vm& vm, const std::string& body) {
    Grace grace = shutdown_body(body);
    if (grace.error) return *grace.error;
    if (vm.state() == VmState::exited)
        return error_response(make_error(Errc::state, "the VM has exited", "shutting down the VM"));
    vm.request_stop(grace.value);
    return json_response(202, stopping_json());
}

Json migration_json(const MigrationStatus& m) {
    Json j;
    j["state"] = m.state;
    if (!m.uri.empty()) j["uri"] = m.uri;
    if (!m.error.empty()) j["error"] = m.error;
    if (!m.policy.empty()) j["policy"] = m.policy;
    j["percent"] = m.percent;
    j["transferredBytes"] = m.transferred_bytes;
    j["remainingBytes"] = m.remaining_bytes;
    j["totalBytes"] = m.total_bytes;
    j["dirtyRateBytes"] = m.dirty_rate_bytes;
    j["expectedDowntimeMs"] = m.expected_downtime_ms;
    j["iterations"] = m.iterations;
    if (m.setup_ms) j["setupMs"] = *m.setup_ms;
    if (m.total_ms) j["totalMs"] = *m.total_ms;
    if (m.downtime_ms) j["downtimeMs"] = *m.downtime_ms;
    return j;
}

asio::awaitable<Response> change_medium(Vm& vm, const Route& route, const std::string& body) {
    auto request = media_body(body);
    if (request.error) co_return *request.error;
    auto changed = co_await vm.change_medium(route.name, std::move(request.value));
    if (!changed) co_return error_response(changed.error());
    for (const auto& d : vm.live_spec().disks) {
        if (d.name != route.name) continue;
        Json j;
        j["name"] = d.name;
        j["medium"] =
            d.no_medium() ? Json(nullptr) : Json{{"path", d.path}, {"format", to_string(d.format)}};
        co_return json_response(200, j);
    }
    co_return error_response(make_error(Errc::internal, "the cdrom left the live spec"));
}

asio::awaitable<Response> start_migration(Vm& vm, const std::string& body) {
    auto request = migrate_body(body);
    if (request.error) co_return *request.error;
    auto started = co_await vm.migrate(std::move(request.value));
    if (!started) co_return error_response(started.error());
    co_return json_response(202, migration_json(vm.migration()));
}

asio::awaitable<Response> cancel_migration(Vm& vm) {
    auto cancelled = co_await vm.cancel_migration();
    if (!cancelled) co_return error_response(cancelled.error());
    co_return json_response(202, migration_json(vm.migration()));
}

}  // namespace

asio::awaitable<Response> handle(Vm& vm, const Route& route, std::string body) {
    switch (route.endpoint) {
        case Endpoint::vm:
            co_return vm_status(vm);
        case Endpoint::topology:
            co_return topology_json(vm);
        case Endpoint::cpus:
            co_return cpus_json(vm);
        case Endpoint::disks:
            co_return co_await add_device(vm, body, spec::parse_disk, [&vm](spec::Disk d) {
                return vm.add_disk(std::move(d));
            });
        case Endpoint::interfaces:
            co_return co_await add_device(
                vm, body, spec::parse_interface,
                [&vm](spec::Interface i) { return vm.add_interface(std::move(i)); });
        case Endpoint::disk:
            co_return co_await remove_device(vm, route,
                                             [&vm](std::string n, std::chrono::milliseconds t) {
                                                 return vm.remove_disk(std::move(n), t);
                                             });
        case Endpoint::media:
            co_return co_await change_medium(vm, route, body);
        case Endpoint::interface:
            co_return co_await remove_device(vm, route,
                                             [&vm](std::string n, std::chrono::milliseconds t) {
                                                 return vm.remove_interface(std::move(n), t);
                                             });
        case Endpoint::pause:
            co_return co_await change_state(vm, [&vm] { return vm.pause(); });
        case Endpoint::resume:
            co_return co_await change_state(vm, [&vm] { return vm.resume(); });
        case Endpoint::shutdown:
            co_return shutdown(vm, body);
        case Endpoint::migrate:
            co_return co_await start_migration(vm, body);
        case Endpoint::migration:
            co_return json_response(200, migration_json(vm.migration()));
        case Endpoint::cancel_migration:
            co_return co_await cancel_migration(vm);
        case Endpoint::console:
        case Endpoint::events:
            break;  // streamed by the server, never routed here
    }
    co_return error_response(make_error(Errc::internal, "endpoint without a handler"));
}

}  // namespace qshim::api
