// virtio-fs: the filesystems region of the topology, QEMU's vhost-user-fs-pci, virtiofsd's argv,
// and the namespaces a self-sandboxing helper gets (with real processes: a user namespace of its
// own, a read-only bind, a socket qshim made and a ready line).
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>
#include <sstream>

#include "launcher/helper.hpp"
#include "launcher/helper_plan.hpp"
#include "launcher/preflight.hpp"
#include "launcher/process.hpp"
#include "launcher/sandbox.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using Catch::Contains;
using nlohmann::json;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string shares =
    "name: vm\ndisks:\n  - {name: root, path: /i/root.raw, format: raw}\n"
    "filesystems:\n  - {name: data, path: /srv/data}\n"
    "  - name: conf\n    path: \"/srv/a,b\"\n    tag: config\n    readOnly: true\n";

std::vector<std::string> values_of(const std::vector<std::string>& argv,
                                   const std::string& option) {
    std::vector<std::string> out;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option) out.push_back(argv[i + 1]);
    return out;
}

struct TempDir {
    fs::path path;
    TempDir() {
        char name[] = "/tmp/qshim-virtiofs-XXXXXX";
        REQUIRE(mkdtemp(name));
        path = name;
    }
    ~TempDir() { fs::remove_all(path); }
};

// The sandbox of a helper run by these tests: as root, QEMU's default uid (mapping root into a
// namespace needs CAP_SETFCAP, and QEMU never runs as root anyway); otherwise our own ids.
SandboxPlan test_sandbox() {
    SandboxPlan plan;
    plan.ids = getuid() == 0 ? Ids{107, 107} : Ids{getuid(), getgid()};
    plan.change_ids = getuid() == 0;
    return plan;
}

// Runs `argv` under `plan` and returns what it printed and its wait status.
std::pair<std::string, int> run_under(const SandboxPlan& plan, std::vector<std::string> argv) {
    int out[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    SpawnPlan spawn_plan;
    spawn_plan.argv = std::move(argv);
    spawn_plan.fds = {STDIN_FILENO, out[1], out[1]};
    spawn_plan.sandbox = &plan;
    auto child = spawn(spawn_plan);
    close(out[1]);
    INFO((child ? std::string() : child.error().what()));
    REQUIRE(child);
    std::string text;
    char buffer[512];
    ssize_t n;
    while ((n = read(out[0], buffer, sizeof buffer)) > 0) text.append(buffer, size_t(n));
    close(out[0]);
    int status = 0;
    waitpid(child->pid, &status, 0);
    close(child->exit_fd);
    return {text, status};
}

}  // namespace

TEST_CASE("filesystems get their own region after every other, in list order",
          "[virtio-fs][topology]") {
    auto s = test::must_parse(shares);
    auto t = topology::plan(s);
    REQUIRE(t);
    const auto* data = t->find_device("data", topology::DeviceKind::filesystem);
    const auto* conf = t->find_device("conf", topology::DeviceKind::filesystem);
    REQUIRE(data);
    REQUIRE(conf);
    CHECK(spec::to_string(data->address) == "0000:7b:00.0");  // bus 123
    CHECK(spec::to_string(conf->address) == "0000:7c:00.0");
    CHECK(data->driver == "vhost-user-fs-pci");
    CHECK(data->parent == "rp.filesystems.0");
    // The same spec without its shares lays out every other device exactly as before.
    auto without = s;
    without.filesystems.clear();
    auto u = topology::plan(without);
    REQUIRE(u);
    const auto* root = t->find_device("root", topology::DeviceKind::disk);
    REQUIRE(root);
    CHECK(root->address == u->find_device("root", topology::DeviceKind::disk)->address);
    // The last port before the region reserves the buses up to it.
    const topology::Controller* before = nullptr;
    for (const auto& c : t->controllers)
        if (c.id == "rp.filesystems.0")
            break;
        else if (c.model == "pcie-root-port")
            before = &c;
    REQUIRE(before);
    CHECK(before->bus + before->bus_reserve + 1 == 123);
    // Nine do not fit.
    std::string nine = "name: vm\nfilesystems:\n";
    for (int i = 0; i < 9; ++i) nine += fmt::format("  - {{name: f{}, path: /f{}}}\n", i, i);
    auto r = topology::plan(test::must_parse(nine));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().diagnostics.at(0).reason,
               Contains("9 filesystems do not fit: the layout holds 8"));
}

TEST_CASE("QEMU gets vhost-user-fs-pci with the tag, and shared guest RAM", "[virtio-fs]") {
    auto s = test::must_parse(shares);
    auto t = topology::plan(s);
    REQUIRE(t);
    launcher::CommandOptions options;
    options.state_dir = "/state/vm";
    auto command = launcher::build_command(s, *t, options);
    REQUIRE(command);
    const auto& argv = command->argv;
    auto chardevs = values_of(argv, "-chardev");
    CHECK(std::count(chardevs.begin(), chardevs.end(),
                     "socket,id=vfs.data,path=/state/vm/data.virtiofsd/virtiofsd.sock") == 1);
    std::vector<json> devices;
    for (const auto& d : values_of(argv, "-device"))
        if (json::parse(d)["driver"] == "vhost-user-fs-pci") devices.push_back(json::parse(d));
    REQUIRE(devices.size() == 2);
    CHECK(devices[1] == json{{"driver", "vhost-user-fs-pci"},
                             {"id", "conf"},
                             {"chardev", "vfs.conf"},
                             {"tag", "config"},
                             {"bus", "rp.filesystems.1"},
                             {"addr", "0x0"}});
    bool shared = false;
    for (const auto& o : values_of(argv, "-object")) {
        auto j = json::parse(o);
        if (j["id"] == "ram")
            shared = j["qom-type"] == "memory-backend-memfd" && j["share"] == true;
    }
    CHECK(shared);
}

TEST_CASE("virtiofsd: its own namespaces, chrooted, a path that cannot add an option",
          "[virtio-fs]") {
    CHECK(fuse_option_escape("/srv/a,b\\c") == "/srv/a\\,b\\\\c");
    auto s = test::must_parse(shares);
    auto helpers = plan_helpers(s, "/state/vm", {});
    REQUIRE(helpers);
    REQUIRE(helpers->size() == 2);
    const HelperSpec& conf = (*helpers)[1];
    CHECK(conf.name == "virtiofsd-conf");
    CHECK(conf.device == "filesystems[conf]");
    CHECK(conf.dir == "/state/vm/conf.virtiofsd");
    CHECK(conf.socket == "/state/vm/conf.virtiofsd/virtiofsd.sock");
    CHECK(conf.argv == std::vector<std::string>{"/usr/lib/qemu/virtiofsd", "--fd=3", "-o",
                                                "source=/srv/a\\,b", "-o", "sandbox=chroot",
                                                "--rlimit-nofile=0"});
    CHECK(conf.socket_from_qshim);
    CHECK(conf.own_namespaces);
    CHECK(conf.read_only_bind == "/srv/a,b");
    CHECK((*helpers)[0].read_only_bind.empty());  // data is writable
}

TEST_CASE("a helper's own namespaces: its uid is 0 there, and nothing else is mapped",
          "[virtio-fs][sandbox]") {
    SandboxPlan base = test_sandbox();
    auto plan = own_namespaces_plan(base, "");
    CHECK(plan.seccomp.empty());
    CHECK(plan.uid_map == fmt::format("0 {} 1", base.ids.uid));
    auto [text, status] = run_under(plan, {"sh", "-c", "id -u; cat /proc/self/uid_map"});
    INFO(text);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // uid_map prints each number right-aligned in 10 columns.
    std::istringstream words(text);
    std::string id, inside, outside, count;
    words >> id >> inside >> outside >> count;
    CHECK(id == "0");
    CHECK(inside == "0");
    CHECK(outside == std::to_string(base.ids.uid));
    CHECK(count == "1");
}

TEST_CASE("a read-only share is read-only in the helper's namespace, and only there",
          "[virtio-fs][sandbox]") {
    TempDir dir;
    fs::permissions(dir.path, fs::perms::all);  // writable by the helper's uid but for the bind
    auto plan = own_namespaces_plan(test_sandbox(), dir.path.string());
    const std::string file = (dir.path / "written").string();
    auto [text, status] = run_under(plan, {"sh", "-c", "echo x > '" + file + "'"});
    INFO(text);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 0);
    CHECK_THAT(text, Contains("Read-only file system"));  // not "Permission denied"
    CHECK_FALSE(fs::exists(file));
    std::ofstream(file) << "the host still writes here";  // the bind was the helper's alone
    CHECK(fs::exists(file));
}

TEST_CASE("a helper on a socket qshim made is ready when it says so", "[virtio-fs][helper]") {
    TempDir dir;
    HelperSpec h;
    h.name = "said";
    h.device = "filesystems[said]";
    h.dir = (dir.path / "own").string();
    h.socket = (dir.path / "own" / "s.sock").string();
    h.package = "python3";
    h.socket_from_qshim = true;
    h.ready_line = "waiting for a connection";
    // It checks fd 3 is a listening unix socket before saying so.
    h.argv = {"python3", "-c",
              "import socket, time\n"
              "s = socket.socket(fileno=3)\n"
              "assert s.family == socket.AF_UNIX\n"
              "assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)\n"
              "print('waiting for a connection', flush=True)\n"
              "time.sleep(600)\n"};
    asio::io_context io;
    auto helper = std::make_shared<Helper>(io.get_executor(), h);
    SandboxPlan sandbox;
    // Named: start() holds references until it completes (helper.hpp).
    const std::vector<unsigned> affinity;
    const std::function<void(int)> ignore = [](int) {};
    auto f = asio::co_spawn(io, helper->start(sandbox, affinity, 20s, ignore), asio::use_future);
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (f.wait_for(0s) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline)
        io.run_one_for(100ms);
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    auto started = f.get();
    INFO((started ? std::string() : started.error().message));
    REQUIRE(started);
    CHECK(fs::is_socket(h.socket));
    auto stop = asio::co_spawn(io, helper->stop(2s), asio::use_future);
    while (stop.wait_for(0s) != std::future_status::ready) {
        if (io.stopped()) io.restart();
        io.run_one_for(100ms);
    }
    CHECK_FALSE(fs::exists(h.dir));

    // One that never says it: the deadline.
    h.argv = {"sleep", "600"};
    auto silent = std::make_shared<Helper>(io.get_executor(), h);
    io.restart();
    auto g = asio::co_spawn(io, silent->start(sandbox, affinity, 300ms, ignore), asio::use_future);
    deadline = std::chrono::steady_clock::now() + 30s;
    while (g.wait_for(0s) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline) {
        if (io.stopped()) io.restart();
        io.run_one_for(100ms);
    }
    auto late = g.get();
    REQUIRE_FALSE(late);
    CHECK_THAT(late.error().message,
               Contains("it did not say \"waiting for a connection\" within 300 ms"));
}

TEST_CASE("preflight: virtiofsd missing names its package; the share must be a folder",
          "[virtio-fs]") {
    TempDir dir;
    std::ofstream(dir.path / "file") << "not a folder";
    auto s = test::must_parse(fmt::format(
        "name: vm\nfilesystems:\n  - {{name: ok, path: {0}}}\n  - {{name: file, path: {0}/file}}\n"
        "  - {{name: gone, path: {0}/gone}}\n",
        dir.path.string()));
    PreflightInput input;
    input.accel = spec::Accel::tcg;
    input.virtiofsd_binary = "/nonexistent/virtiofsd";
    std::vector<std::string> warnings;
    auto r = preflight(s, input, warnings);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message,
               Contains("filesystems[0] (ok): /nonexistent/virtiofsd: not found (install Debian's "
                        "qemu-system-common)") &&
                   Contains(fmt::format("filesystems[1] (file).path: {}/file: not a folder",
                                        dir.path.string())) &&
                   Contains(fmt::format("filesystems[2] (gone).path: {}/gone: no such folder",
                                        dir.path.string())));
}
