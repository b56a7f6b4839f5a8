// An outside program: includes only the umbrella header, links only libqshim.so (built here, or
// installed and found with pkg-config by tests/install/check), and calls every function the
// public headers declare. A symbol missing from the shared library fails the link.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <cstdlib>
#include <qshim/qshim.hpp>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "public-api: %s\n", what);
        ++failures;
    }
}

// error.hpp, log.hpp
void error_and_log() {
    qshim::Error e = qshim::make_error(qshim::Errc::io, "m", "c");
    check(e.what() == "c: m", "Error::what");
    check(std::string(qshim::to_string(qshim::Errc::timeout)) == "timed out", "to_string(Errc)");
    check(!qshim::to_string(qshim::Diagnostic{"f", 1, 2, "p", "r"}).empty(),
          "to_string(Diagnostic)");
    int seen = 0;
    qshim::log::set_sink(
        [&seen](std::string_view, qshim::log::Level, std::string_view) { ++seen; });
    qshim::log::configure("*:debug");
    check(qshim::log::enabled("x", qshim::log::Level::debug), "log::enabled");
    qshim::log::write("x", qshim::log::Level::info, "hello");
    check(seen == 1, "log::write reaches the sink");
    check(std::string(qshim::log::to_string(qshim::log::Level::warn)) == "warning",
          "log::to_string");
    qshim::log::configure("*:info");
    qshim::log::set_sink(nullptr);
}

// spec.hpp, topology.hpp, launcher.hpp
void spec_topology_launcher() {
    using namespace qshim;
    auto s = spec::parse_spec(
        "name: api\nmemory: {size: 64Mi}\ndisks: [{name: d, path: /d.img, "
        "format: raw}]\ninterfaces: [{name: n, backend: {type: user}}]\n",
        "/tmp/api.yaml");
    check(s.ok(), "parse_spec");
    if (!s) return;
    check(!spec::load_spec("/nonexistent/api.yaml").ok(), "load_spec of a missing file fails");
    check(spec::is_kubevirt_manifest("apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n") &&
              !spec::is_kubevirt_manifest("name: vm\n"),
          "is_kubevirt_manifest");
    spec::LoadOptions kubevirt;
    kubevirt.volume_roots.container_disks = "/images";
    auto vmi = spec::parse_spec(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: k}\n"
        "spec:\n  domain:\n    memory: {guest: 64Mi}\n    devices:\n      disks: [{name: r}]\n"
        "  volumes: [{name: r, containerDisk: {image: x}}]\n",
        "/tmp/vmi.yaml", kubevirt);
    check(vmi.ok() && vmi->disks.at(0).path == "/images/disk_0.img", "parse_spec of a manifest");
    check(spec::parse_disk(R"({"name": "e", "path": "/e.img", "format": "raw"})", *s).ok(),
          "parse_disk");
    check(spec::parse_interface(R"({"name": "m", "backend": {"type": "user"}})", *s).ok(),
          "parse_interface");
    check(!spec::to_string(spec::default_mac("api", "n")).empty(), "default_mac/to_string(Mac)");
    auto pci = spec::parse_pci_address("0000:01:00.0");
    check(pci && spec::to_string(*pci) == "0000:01:00.0", "parse_pci_address/to_string");
    check(std::string(spec::to_string(spec::Accel::tcg)) == "tcg", "to_string(Accel)");
    check(std::string(spec::to_string(spec::DiskBus::virtio)) == "virtio", "to_string(DiskBus)");
    check(std::string(spec::to_string(spec::DiskFormat::raw)) == "raw", "to_string(DiskFormat)");
    check(std::string(spec::to_string(spec::DiskDevice::disk)) == "disk", "to_string(DiskDevice)");
    check(std::string(spec::to_string(spec::NicModel::virtio)) == "virtio", "to_string(NicModel)");
    check(std::string(spec::to_string(spec::BackendType::user)) == "user", "to_string(Backend)");
    check(spec::to_yaml(*s).ok() && spec::to_json(*s).ok(), "spec to_yaml/to_json");

    auto t = topology::plan(*s);
    check(t.ok() && t->machine == "pc-q35-7.2", "plan");
    if (!t) return;
    const topology::Device* d = t->find_device("d", topology::DeviceKind::disk);
    check(d != nullptr, "Topology::find_device");
    check(std::string(topology::to_string(topology::DeviceKind::disk)) == "disk",
          "to_string(DeviceKind)");
    check(topology::to_json(*t).ok() && topology::to_yaml(*t).ok(), "topology to_json/to_yaml");
    if (d) check(topology::to_json(*d).ok(), "to_json(Device)");
    auto resolved = topology::resolve(*s, *t);
    auto again = topology::plan(resolved);
    check(again.ok() && topology::diff(*t, *again).empty(), "resolve/diff");
    auto fp = topology::fingerprint(*s, *t);
    check(!fp.facts.empty() && fp.digest == topology::fingerprint_digest(fp.facts) &&
              topology::compare(fp, fp).empty(),
          "fingerprint/compare");
    topology::Change c{topology::Change::Type::moved, "disk d", "a -> b"};
    check(!topology::to_string(c).empty(), "to_string(Change)");

    launcher::CommandOptions options;
    options.qmp_fd = 42;
    auto command = launcher::build_command(*s, *t, options);
    check(command.ok() && !command->argv.empty() && command->fds.size() == 1, "build_command");
    check(launcher::qemu_opts_escape("a,b") == "a,,b", "qemu_opts_escape");
    check(launcher::format_node_name("d") == "b.d" && launcher::file_node_name("d") == "f.d",
          "node names");
    check(launcher::netdev_id("n") == "net.n", "netdev_id");
}

// qmp.hpp, vm.hpp, api.hpp: everything that runs on an executor, without QEMU.
void runtime() {
    using namespace qshim;
    boost::asio::io_context io;
    auto s = spec::parse_spec("name: rt\nmemory: {size: 64Mi}\n", "/tmp/rt.yaml");
    auto t = topology::plan(*s);
    check(std::string(qmp::to_string(qmp::State::idle)) == "idle", "qmp::to_string(State)");
    check(std::string(to_string(VmState::qmp_lost)) == "qmp-lost", "to_string(VmState)");
    check(std::string(to_string(VmExit::Reason::qmp_lost)) == "qmp-lost", "to_string(Reason)");

    qmp::Client client(io.get_executor());
    auto listener = client.listen({});
    Vm vm(io.get_executor(), *s, *t, VmOptions{});
    std::string socket = "/tmp/qshim-public-api-" + std::to_string(getpid()) + ".sock";
    ApiServer server(io.get_executor(), vm, socket);
    bool done = false;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            auto connected = co_await client.connect_path("/nonexistent/qmp.sock");
            check(!connected.ok(), "connect_path to nothing fails");
            auto other = qmp::Client(io.get_executor());
            auto fd = co_await other.connect_fd(-1);
            check(!fd.ok(), "connect_fd(-1) fails");
            auto r = co_await client.execute("query-status");
            check(!r.ok(), "execute on a closed client fails");
            auto f = co_await client.execute_with_fd("getfd", qmp::Json::object(), 0);
            check(!f.ok(), "execute_with_fd on a closed client fails");
            auto e = co_await listener->next(std::chrono::milliseconds(10));
            check(!e.ok(), "EventListener::next on a closed client fails");
            check(!listener->try_next() && listener->size() == 0 && listener->dropped() == 0,
                  "EventListener accessors");
            auto w = co_await qmp::wait_event(
                *listener, [](const qmp::Event&) { return true; }, std::chrono::milliseconds(10));
            check(!w.ok(), "wait_event on a closed client fails");
            check(client.state() == qmp::State::disconnected && client.close_reason().has_value() &&
                      client.stats().commands_sent == 0,
                  "Client state/close_reason/stats");
            client.close();

            check(server.start().ok() && server.socket_path() == socket, "ApiServer start");
            // A VM that never started: every change is refused, and a stop ends it.
            auto disk = spec::parse_disk(R"({"name": "e", "path": "/e.img", "format": "raw"})", *s);
            auto nic = spec::parse_interface(R"({"name": "m", "backend": {"type": "user"}})", *s);
            check(!(co_await vm.add_disk(*disk)).ok(), "add_disk refused");
            check(!(co_await vm.add_interface(*nic)).ok(), "add_interface refused");
            check(!(co_await vm.remove_disk("e", std::chrono::milliseconds(10))).ok(),
                  "remove_disk refused");
            check(!(co_await vm.remove_interface("m", std::chrono::milliseconds(10))).ok(),
                  "remove_interface refused");
            check(!(co_await vm.pause()).ok() && !(co_await vm.resume()).ok(), "pause/resume");
            MigrationRequest migration;
            migration.uri = "unix:/nonexistent/m.sock";
            check(!(co_await vm.migrate(migration)).ok() && vm.migration().state == "none" &&
                      !(co_await vm.cancel_migration()).ok(),
                  "migrate refused, nothing to cancel");
            auto id = vm.subscribe([](const nlohmann::json&) {});
            vm.unsubscribe(id);
            check(vm.state() == VmState::created && vm.pid() <= 0 && vm.argv().empty() &&
                      vm.spec().name == "rt" && vm.live_spec().name == "rt" &&
                      vm.topology().machine == "pc-q35-7.2" && vm.removing().empty() &&
                      vm.diverged().empty() && vm.qemu_version().is_object() &&
                      vm.cpus().placement == "unpinned" && vm.cpus().vcpus.empty(),
                  "Vm accessors");
            vm.request_stop();
            auto exit = co_await vm.wait_exit();
            check(exit.reason == VmExit::Reason::stopped, "a stop before start");
            check(!(co_await vm.start()).ok(), "start after the end is refused");
            server.stop();
            done = true;
        },
        boost::asio::detached);
    io.run();
    check(done, "the runtime calls completed");
}

}  // namespace

int main() {
    error_and_log();
    spec_topology_launcher();
    runtime();
    {
        namespace cg = qshim::cgroups;
        auto cpus = cg::parse_cpu_list("0-2,5");
        check(cpus && cg::to_cpu_list(*cpus) == "0-2,5", "parse_cpu_list/to_cpu_list");
        check(std::string(cg::to_string(cg::Mode::hybrid)) == "hybrid", "to_string(cgroups::Mode)");
        auto limits = cg::discover();
        check(limits.ok() && !limits->cpus.empty(), "cgroups::discover");
        auto host = cg::read_host_topology();
        check(host.ok() && host->cpu(host->cpus.front().id) != nullptr, "read_host_topology");
        auto cpuset = cg::read_cpuset(*limits);
        check(cpuset.ok() && *cpuset == limits->cpus, "read_cpuset");
        auto spec = qshim::spec::parse_spec(
            "name: p\ncpu: {dedicated: true}\nnuma: {guestNodes: auto}\n", "p.yaml");
        check(spec.ok(), "a pinned spec");
        auto placement = qshim::launcher::plan_placement(*spec, *limits, *host);
        check(placement.ok() && placement->vcpus.size() == 1 && placement->numa.size() == 1,
              "plan_placement");
        check(!qshim::launcher::resolve_numa(*spec, *placement).numa.automatic, "resolve_numa");
        auto topo = qshim::topology::plan(*spec);
        qshim::launcher::PlanInputs inputs;
        inputs.boot_files_bytes = 0;
        auto resources = qshim::launcher::plan_resources(*spec, *topo, inputs);
        check(resources.ok() && resources->cpus == 1 && qshim::launcher::memlock_needed(*spec) == 0,
              "plan_resources");
        check(!qshim::launcher::to_text(*resources, *spec).empty() &&
                  !qshim::launcher::to_json(*resources).empty() &&
                  qshim::launcher::to_k8s(*resources).rfind("resources:", 0) == 0,
              "to_text/to_json/to_k8s");
        check(qshim::spec::parse_size("2Mi") == (2u << 20), "parse_size");
    }
    check(std::string(qshim::spec::to_string(qshim::spec::SeccompMode::kill)) == "kill",
          "to_string(SeccompMode)");
    // Last: it is one-way for this process.
    check(qshim::launcher::lock_down_supervisor().ok(), "lock_down_supervisor");
    if (failures == 0) std::puts("public-api: every public function called");
    return failures == 0 ? 0 : 1;
}
