// Helper processes (launcher/helper.hpp) and the vhost-user disks they serve: what qshim plans
// (qemu-storage-daemon's argv, QEMU's shared RAM and vhost-user-blk-pci), and how a helper is
// started, awaited, watched and stopped, with real processes.
#include "launcher/helper.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>

#include "launcher/helper_plan.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using Catch::Contains;
using nlohmann::json;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string two_disks =
    "name: vm\ncpu: {sockets: 1, cores: 2}\ndisks:\n"
    "  - {name: ext, backend: {type: vhostUser, socket: /run/ext.sock}}\n"
    "  - {name: qsd, path: /images/q.qcow2, format: qcow2, storageDaemon: true}\n";

std::vector<json> json_args(const std::vector<std::string>& argv, const std::string& option) {
    std::vector<json> out;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option) out.push_back(json::parse(argv[i + 1]));
    return out;
}

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
        char name[] = "/tmp/qshim-helper-XXXXXX";
        REQUIRE(mkdtemp(name));
        path = name;
    }
    ~TempDir() { fs::remove_all(path); }
};

// A helper that listens on DIR/h.sock once it has slept `delay` (python3: no compiler needed).
HelperSpec listener(const fs::path& dir, const char* delay = "0") {
    const std::string socket = (dir / "h.sock").string();
    HelperSpec h;
    h.name = "fake";
    h.device = "disks[fake]";
    h.argv = {"python3", "-c",
              "import socket, sys, time\n"
              "time.sleep(float(sys.argv[2]))\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "s.bind(sys.argv[1])\n"
              "s.listen()\n"
              "print('listening', flush=True)\n"
              "time.sleep(600)\n",
              socket, delay};
    h.dir = dir.string();
    h.socket = socket;
    h.package = "python3";
    return h;
}

// Runs `start` on a fresh helper to completion.
struct Run {
    asio::io_context io;
    std::shared_ptr<Helper> helper;
    std::optional<int> exit_status;
    SandboxPlan sandbox;  // nothing to change: the test's own ids, no filter
    const std::vector<unsigned> affinity;
    const std::function<void(int)> on_exit = [this](int status) { exit_status = status; };

    Result<void> start(HelperSpec spec, std::chrono::milliseconds timeout) {
        helper = std::make_shared<Helper>(io.get_executor(), std::move(spec));
        auto f = asio::co_spawn(io, helper->start(sandbox, affinity, timeout, on_exit),
                                asio::use_future);
        run_until(f);
        return f.get();
    }
    void stop() {
        auto f = asio::co_spawn(io, helper->stop(2s), asio::use_future);
        run_until(f);
    }
    // The helper's own coroutines (its output, its exit) keep the loop busy while it lives.
    template <typename Future>
    void run_until(Future& f) {
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (f.wait_for(0s) != std::future_status::ready &&
               std::chrono::steady_clock::now() < deadline) {
            if (io.stopped()) io.restart();  // out of work once: new work needs a restart
            io.run_one_for(100ms);
        }
        REQUIRE(f.wait_for(0s) == std::future_status::ready);
    }
};

bool alive(pid_t pid) { return kill(pid, 0) == 0; }

}  // namespace

TEST_CASE("vhost-user disks: shared guest RAM, a chardev each, no block nodes in QEMU",
          "[vhost-user]") {
    auto s = test::must_parse(two_disks);
    auto t = topology::plan(s);
    REQUIRE(t);
    launcher::CommandOptions options;
    options.state_dir = "/state/vm";
    auto command = launcher::build_command(s, *t, options);
    REQUIRE(command);
    const auto& argv = command->argv;
    std::vector<json> objects;
    for (const auto& o : json_args(argv, "-object"))
        if (o["id"] == "ram") objects.push_back(o);
    REQUIRE(objects.size() == 1);
    CHECK(objects[0] == json{{"qom-type", "memory-backend-memfd"},
                             {"id", "ram"},
                             {"size", s.memory.size_bytes},
                             {"share", true}});
    CHECK_THAT(values_of(argv, "-machine").at(0), Contains("memory-backend=ram"));
    CHECK(values_of(argv, "-chardev") ==
          std::vector<std::string>{"null,id=serial0", "socket,id=vu.ext,path=/run/ext.sock",
                                   "socket,id=vu.qsd,path=/state/vm/qsd.qsd/vhost-user-blk.sock"});
    CHECK(json_args(argv, "-blockdev").empty());  // QEMU opens no image of these disks
    std::vector<json> disks;
    for (const auto& d : json_args(argv, "-device"))
        if (d["driver"] == "vhost-user-blk-pci") disks.push_back(d);
    REQUIRE(disks.size() == 2);
    CHECK(disks[0] == json{{"driver", "vhost-user-blk-pci"},
                           {"id", "ext"},
                           {"chardev", "vu.ext"},
                           {"bus", "rp.disks.0"},
                           {"addr", "0x0"}});
    CHECK(disks[1]["chardev"] == "vu.qsd");
    CHECK(disks[1]["bus"] == "rp.disks.1");
    CHECK(disks[1]["num-queues"] == 2);  // one per vCPU, as the export's
    CHECK_FALSE(disks[0].contains("serial"));
}

TEST_CASE("vhost-user disks sit where virtio-blk disks would", "[vhost-user][topology]") {
    auto plain = test::must_parse(
        "name: vm\ndisks:\n  - {name: ext, path: /i/a.raw, format: raw}\n"
        "  - {name: qsd, path: /images/q.qcow2, format: qcow2}\n");
    auto served = test::must_parse(two_disks);
    auto a = topology::plan(plain), b = topology::plan(served);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(a->devices.size() == b->devices.size());
    for (size_t i = 0; i < a->devices.size(); ++i) {
        CHECK(a->devices[i].address == b->devices[i].address);
        CHECK(a->devices[i].parent == b->devices[i].parent);
    }
    CHECK(b->devices[0].driver == "vhost-user-blk-pci");
    CHECK(a->controllers.size() == b->controllers.size());
}

TEST_CASE("qemu-storage-daemon exports the image as QEMU would open it", "[vhost-user]") {
    auto s = test::must_parse(two_disks);
    auto helpers = plan_helpers(s, "/state/vm", {});
    REQUIRE(helpers);
    REQUIRE(helpers->size() == 1);  // the external server is not qshim's
    const HelperSpec& h = (*helpers)[0];
    CHECK(h.name == "qsd-qsd");
    CHECK(h.device == "disks[qsd]");
    CHECK(h.dir == "/state/vm/qsd.qsd");
    CHECK(h.socket == "/state/vm/qsd.qsd/vhost-user-blk.sock");
    CHECK(h.package == "qemu-system-common");
    REQUIRE(h.argv.size() == 7);
    CHECK(h.argv[0] == "qemu-storage-daemon");
    CHECK(h.argv[1] == "--blockdev");
    auto file = json::parse(h.argv[2]), format = json::parse(h.argv[4]);
    CHECK(file["driver"] == "file");
    CHECK(file["filename"] == "/images/q.qcow2");
    CHECK(format["driver"] == "qcow2");  // explicit: never probed
    CHECK(format["file"] == file["node-name"]);
    CHECK(h.argv[5] == "--export");
    CHECK(json::parse(h.argv[6]) ==
          json{{"type", "vhost-user-blk"},
               {"id", "export"},
               {"node-name", format["node-name"]},
               {"addr", {{"type", "unix"}, {"path", "/state/vm/qsd.qsd/vhost-user-blk.sock"}}},
               {"writable", true},
               {"num-queues", 2}});
}

TEST_CASE("a storage daemon's socket path longer than a unix socket takes is refused",
          "[vhost-user]") {
    auto s = test::must_parse(two_disks);
    auto helpers = plan_helpers(s, "/state/" + std::string(100, 'x'), {});
    REQUIRE_FALSE(helpers);
    CHECK(helpers.error().code == Errc::launch);
    CHECK_THAT(helpers.error().message,
               Contains("disks[qsd] (qsd-qsd): its socket /state/xxx") &&
                   Contains("past the 107 a unix socket can have; choose a shorter --state-dir"));
}

TEST_CASE("listening sockets are read off /proc/net/unix", "[helper]") {
    const std::string table =
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 1001 /run/a.sock\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03 1002 /run/b.sock\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 1003 /run/with space.sock\n"
        "0000000000000000: 00000002 00000000 00010000 0005 01 1004 @abstract\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03 1005\n";
    CHECK(listening_in(table, "/run/a.sock"));
    CHECK_FALSE(listening_in(table, "/run/b.sock"));  // connected, not listening
    CHECK(listening_in(table, "/run/with space.sock"));
    CHECK_FALSE(listening_in(table, "/run/a.soc"));
    CHECK_FALSE(listening_in(table, "/run/c.sock"));
    CHECK_FALSE(listening_in(table, ""));
    CHECK_FALSE(listening_in("", "/run/a.sock"));
    CHECK_FALSE(listening_in("garbage\n\n  \n", "/run/a.sock"));
}

TEST_CASE("a helper is ready once its socket listens, and stops on SIGTERM", "[helper]") {
    TempDir dir;
    const fs::path own = dir.path / "h";
    Run run;
    auto started = run.start(listener(own, "0.2"), 20s);
    REQUIRE(started);
    const pid_t pid = run.helper->pid();
    CHECK(alive(pid));
    CHECK(run.helper->running());
    run.stop();
    CHECK_FALSE(run.helper->running());
    CHECK_FALSE(alive(pid));
    CHECK(run.helper->description() == "killed by signal 15 (Terminated)");
    CHECK_FALSE(run.exit_status);  // stopped, not exited on its own
    CHECK_FALSE(fs::exists(own));  // its folder, and its socket in it
}

TEST_CASE("a helper that exits before listening is an error with its last words", "[helper]") {
    HelperSpec spec;
    spec.name = "early";
    spec.device = "disks[d]";
    spec.argv = {"sh", "-c", "echo cannot open the image >&2; exit 3"};
    spec.dir = "";
    spec.socket = "/nonexistent/h.sock";
    spec.package = "dash";
    Run run;
    auto started = run.start(spec, 20s);
    REQUIRE_FALSE(started);
    CHECK(started.error().code == Errc::launch);
    CHECK(started.error().context == "starting early for disks[d]");
    CHECK_THAT(started.error().message,
               Contains("early (disks[d]): it exited with status 3 before its socket "
                        "/nonexistent/h.sock listened") &&
                   Contains("argv: sh -c") && Contains("cannot open the image"));
}

TEST_CASE("a helper whose socket never listens is killed at the deadline", "[helper]") {
    TempDir dir;
    Run run;
    auto started = run.start(listener(dir.path / "h", "600"), 300ms);
    REQUIRE_FALSE(started);
    CHECK_THAT(started.error().message, Contains("was not listening within 300 ms"));
    CHECK_FALSE(run.helper->running());
    CHECK_FALSE(alive(run.helper->pid()));
    CHECK_FALSE(fs::exists(dir.path / "h"));
}

TEST_CASE("a missing helper binary names its package", "[helper]") {
    HelperSpec spec;
    spec.name = "gone";
    spec.device = "disks[d]";
    spec.argv = {"qshim-no-such-helper"};
    spec.dir = "";
    spec.socket = "/nonexistent/h.sock";
    spec.package = "qemu-system-common";
    Run run;
    auto started = run.start(spec, 1s);
    REQUIRE_FALSE(started);
    CHECK_THAT(started.error().message,
               Contains("not found in PATH") && Contains("(from Debian's qemu-system-common)"));
}

TEST_CASE("a helper that dies on its own is reported, once", "[helper]") {
    TempDir dir;
    Run run;
    REQUIRE(run.start(listener(dir.path / "h"), 20s));
    REQUIRE(kill(run.helper->pid(), SIGKILL) == 0);
    for (int i = 0; i < 100 && !run.exit_status; ++i) run.io.run_one_for(100ms);
    REQUIRE(run.exit_status);
    CHECK(WIFSIGNALED(*run.exit_status));
    CHECK(WTERMSIG(*run.exit_status) == SIGKILL);
    CHECK(run.helper->description() == "killed by signal 9 (Killed)");
    run.stop();  // a stop after its death is a no-op
    CHECK(run.helper->description() == "killed by signal 9 (Killed)");
}

TEST_CASE("a helper's folder left by a killed run: its socket goes, anything else stops the start",
          "[helper]") {
    TempDir dir;
    const fs::path own = dir.path / "h";
    fs::create_directory(own);
    {
        Run run;
        // A socket nobody listens on, as a killed helper leaves it.
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = (own / "h.sock").string();
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        close(fd);
        REQUIRE(run.start(listener(own), 20s));
        run.stop();
        CHECK_FALSE(fs::exists(own));
    }
    fs::create_directory(own);
    std::ofstream(own / "planted") << "not qshim's";
    Run run;
    auto started = run.start(listener(own), 20s);
    REQUIRE_FALSE(started);
    CHECK_THAT(started.error().message, Contains("its folder, left by an earlier run, holds more "
                                                 "than a socket"));
    CHECK(run.helper->pid() <= 0);  // nothing was started
    CHECK(fs::exists(own / "planted"));
}
