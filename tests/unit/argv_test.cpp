// The QEMU command line: JSON options that no path can break, and the escaping of the rest.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>

#include "spec_test_util.hpp"

using namespace qshim;
using qshim::test::must_parse;

namespace {

std::vector<std::string> argv_for(const std::string& yaml, launcher::CommandOptions options = {}) {
    auto s = must_parse(yaml);
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto command = launcher::build_command(s, *t, options);
    REQUIRE(command.ok());
    return command->argv;
}

std::vector<nlohmann::json> json_args(const std::vector<std::string>& argv,
                                      const std::string& option) {
    std::vector<nlohmann::json> out;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option) out.push_back(nlohmann::json::parse(argv[i + 1]));
    return out;
}

std::string value_of(const std::vector<std::string>& argv, const std::string& option) {
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option) return argv[i + 1];
    return {};
}

}  // namespace

TEST_CASE("a path with option syntax in it reaches QEMU as one JSON string") {
    const std::string hostile = "/img/a,file=/etc/shadow,b\"}\n{.raw";
    nlohmann::json quoted = hostile;  // a YAML double-quoted string takes JSON escapes
    auto argv = argv_for("name: h\ndisks: [{name: d, format: raw, path: " + quoted.dump() + "}]\n");
    auto blockdevs = json_args(argv, "-blockdev");
    REQUIRE(blockdevs.size() == 2);
    CHECK(blockdevs[0]["driver"] == "file");
    CHECK(blockdevs[0]["filename"] == hostile);
    CHECK(blockdevs[1]["driver"] == "raw");  // explicit: QEMU never probes
    CHECK(blockdevs[1]["file"] == blockdevs[0]["node-name"]);
    // The path appears nowhere else on the command line.
    int mentions = 0;
    for (const auto& a : argv) mentions += a.find("/etc/shadow") != std::string::npos;
    CHECK(mentions == 1);
}

TEST_CASE("-chardev values double their commas, QEMU's escape for key=value syntax") {
    CHECK(launcher::qemu_opts_escape("a,b,,c") == "a,,b,,,,c");
    CHECK(launcher::qemu_opts_escape("plain") == "plain");
    auto argv = argv_for("name: c\nserial: {log: \"/logs/x,path=/etc/passwd\"}\n");
    CHECK(value_of(argv, "-chardev") == "file,id=serial0,path=/logs/x,,path=/etc/passwd,append=on");
}

TEST_CASE("block node names stay within QEMU's 31 characters and stay distinct") {
    std::string a(63, 'a'), b = std::string(62, 'a') + "b";
    CHECK(launcher::format_node_name(a).size() <= 31);
    CHECK(launcher::file_node_name(a).size() <= 31);
    CHECK(launcher::format_node_name(a) != launcher::format_node_name(b));
    CHECK(launcher::format_node_name("root") == "b.root");
}

TEST_CASE("accel auto tries KVM then TCG; overrides win") {
    auto argv = argv_for("name: a\n");
    std::vector<std::string> accels;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == "-accel") accels.push_back(argv[i + 1]);
    CHECK(accels == std::vector<std::string>{"kvm", "tcg"});
    launcher::CommandOptions tcg;
    tcg.accel = spec::Accel::tcg;
    CHECK(value_of(argv_for("name: a\nmachine: {accel: kvm}\n", tcg), "-accel") == "tcg");
}

TEST_CASE("cpu model host with TCG is refused before anything starts") {
    auto s = must_parse("name: h\ncpu: {model: host}\nmachine: {accel: tcg}\n");
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto command = launcher::build_command(s, *t);
    REQUIRE_FALSE(command.ok());
    CHECK(command.error().code == Errc::invalid_spec);
}

TEST_CASE("controllers come before the devices that plug into them") {
    auto argv = argv_for("name: o\ndisks: [{name: s, path: /s.img, format: raw, bus: scsi}]\n");
    auto devices = json_args(argv, "-device");
    size_t hba = 0, disk = 0;
    for (size_t i = 0; i < devices.size(); ++i) {
        if (devices[i]["driver"] == "virtio-scsi-pci") hba = i;
        if (devices[i]["driver"] == "scsi-hd") disk = i;
    }
    CHECK(hba < disk);
    CHECK(devices[disk]["bus"] == "scsi.0.0");
}

TEST_CASE("QMP over an inherited fd and paused start") {
    launcher::CommandOptions options;
    options.qmp_fd = 17;  // the caller's number: QEMU knows it as 3
    options.paused = true;
    auto argv = argv_for("name: q\n", options);
    CHECK(std::find(argv.begin(), argv.end(), "-S") != argv.end());
    CHECK(std::find(argv.begin(), argv.end(), "socket,id=qmp,fd=3") != argv.end());
}

TEST_CASE("every fd argv names comes with the plan that puts it there") {
    auto s = must_parse(
        "name: f\ninterfaces:\n"
        "  - {name: a, backend: {type: tap, fd: 3}}\n"
        "  - {name: b, backend: {type: user}}\n"
        "  - {name: c, backend: {type: tap, fd: 9}}\n");
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    launcher::CommandOptions options;
    options.qmp_fd = 12;
    auto command = launcher::build_command(s, *t, options);
    REQUIRE(command.ok());
    // QMP first, then the tap fds in the spec's order; targets from 3 without gaps. The spec's
    // "fd: 3" is qshim's fd 3, which QEMU gets as 4: it never lands on the QMP socket.
    REQUIRE(command->fds.size() == 3);
    CHECK(command->fds[0].target == 3);
    CHECK(command->fds[0].source == 12);
    CHECK(command->fds[1].target == 4);
    CHECK(command->fds[1].source == 3);
    CHECK(command->fds[1].purpose == "interfaces[0] (a): tap");
    CHECK(command->fds[2].target == 5);
    CHECK(command->fds[2].source == 9);
    auto netdevs = json_args(command->argv, "-netdev");
    REQUIRE(netdevs.size() == 3);
    CHECK(netdevs[0]["fd"] == "4");
    CHECK(netdevs[2]["fd"] == "5");
    CHECK(std::find(command->argv.begin(), command->argv.end(), "socket,id=qmp,fd=3") !=
          command->argv.end());
}

TEST_CASE("a topology planned from another spec is refused, not indexed") {
    auto small = must_parse("name: a\ndisks: [{name: d, path: /d.img, format: raw}]\n");
    auto big = must_parse(
        "name: a\ndisks: [{name: d, path: /d.img, format: raw}, {name: e, path: /e.img, format: "
        "raw}]\n");
    auto t = topology::plan(big);
    REQUIRE(t.ok());
    auto command = launcher::build_command(small, *t);
    REQUIRE_FALSE(command.ok());
    CHECK(command.error().code == Errc::topology);
    CHECK(command.error().what().find("disk e") != std::string::npos);
    // Same length, other names: refused too.
    auto renamed = must_parse("name: a\ndisks: [{name: x, path: /d.img, format: raw}]\n");
    auto t2 = topology::plan(renamed);
    REQUIRE(t2.ok());
    CHECK_FALSE(launcher::build_command(small, *t2).ok());
}

TEST_CASE("a spec built in code with invalid UTF-8 is an error, not an exception") {
    auto s = must_parse("name: u\ndisks: [{name: d, path: /ok.img, format: raw}]\n");
    s.disks[0].path = "/bad\xff.img";
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto command = launcher::build_command(s, *t);
    REQUIRE_FALSE(command.ok());
    CHECK(command.error().code == Errc::invalid_spec);
}

TEST_CASE("guest RAM: one backend for huge pages or prealloc, one per NUMA node", "[placement]") {
    auto plain = argv_for("name: vm\nmemory: {size: 1Gi}\n");
    CHECK(json_args(plain, "-object").size() == 1);  // the RNG's source only
    CHECK(value_of(plain, "-machine").find("memory-backend") == std::string::npos);

    auto huge = argv_for("name: vm\nmemory: {size: 1Gi, hugepages: 2Mi, prealloc: true}\n");
    CHECK(value_of(huge, "-machine").find(",memory-backend=ram") != std::string::npos);
    auto objects = json_args(huge, "-object");
    REQUIRE(objects.size() == 2);
    CHECK(objects[0] == nlohmann::json::parse(
                            R"({"qom-type":"memory-backend-memfd","id":"ram","size":1073741824,
                                "hugetlb":true,"hugetlbsize":2097152,"prealloc":true})"));

    auto numa = argv_for(
        "name: vm\ncpu: {sockets: 2, cores: 2, threads: 2}\nmemory: {size: 1Gi}\n"
        "numa:\n  guestNodes:\n    - {vcpus: 0-3, memory: 768Mi, hostNodes: 1}\n"
        "    - {vcpus: 4-7, memory: 256Mi}\n");
    CHECK(value_of(numa, "-machine").find("memory-backend") == std::string::npos);
    objects = json_args(numa, "-object");
    REQUIRE(objects.size() == 3);
    CHECK(objects[0] == nlohmann::json::parse(
                            R"({"qom-type":"memory-backend-ram","id":"ram-node0","size":805306368,
                                "host-nodes":[1],"policy":"bind"})"));
    CHECK(objects[1]["id"] == "ram-node1");
    CHECK_FALSE(objects[1].contains("host-nodes"));
    std::vector<std::string> numa_args;
    for (size_t i = 0; i + 1 < numa.size(); ++i)
        if (numa[i] == "-numa") numa_args.push_back(numa[i + 1]);
    REQUIRE(numa_args.size() == 10);
    CHECK(numa_args[0] == "node,nodeid=0,memdev=ram-node0");
    CHECK(numa_args[1] == "node,nodeid=1,memdev=ram-node1");
    // vCPU 5 = socket 1, core 0, thread 1 (sockets x cores x threads, thread fastest).
    CHECK(numa_args[7] == "cpu,node-id=1,socket-id=1,core-id=0,thread-id=1");
    CHECK(numa_args[4] == "cpu,node-id=0,socket-id=0,core-id=1,thread-id=0");

    // auto must be resolved for a host first: build_command never guesses.
    auto s = must_parse("name: vm\ncpu: {dedicated: true}\nnuma: {guestNodes: auto}\n");
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto refused = launcher::build_command(s, *t);
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(refused.error().message, Catch::Contains("resolve it for this host first"));
}

TEST_CASE("IOThreads are objects, and disks name theirs", "[placement]") {
    auto argv = argv_for(
        "name: vm\niothreads: 2\ndisks:\n  - {name: a, path: /a, format: raw, iothread: 1}\n"
        "  - {name: b, path: /b, format: raw, bus: scsi, iothread: 0}\n"
        "  - {name: c, path: /c, format: raw}\n");
    auto objects = json_args(argv, "-object");
    CHECK(std::count_if(objects.begin(), objects.end(),
                        [](const nlohmann::json& o) { return o["qom-type"] == "iothread"; }) == 2);
    bool scsi_on_io0 = false, a_on_io1 = false, c_without = false;
    for (const auto& d : json_args(argv, "-device")) {
        if (d["driver"] == "virtio-scsi-pci") scsi_on_io0 = d.value("iothread", "") == "io0";
        if (d.value("id", "") == "a") a_on_io1 = d.value("iothread", "") == "io1";
        if (d.value("id", "") == "c") c_without = !d.contains("iothread");
    }
    CHECK(scsi_on_io0);
    CHECK(a_on_io1);
    CHECK(c_without);
}

TEST_CASE("cache modes: O_DIRECT on the image's file node, the write cache on the device") {
    auto argv = argv_for(
        "name: vm\ndisks:\n  - {name: n, path: /n, format: raw, cache: none}\n"
        "  - {name: t, path: /t, format: qcow2, bus: sata, cache: writethrough}\n"
        "  - {name: b, path: /b, format: raw, bus: scsi, cache: writeback}\n"
        "  - {name: d, path: /d, format: raw}\n"
        "  - {name: e, path: /e, format: raw, ephemeral: true, cache: none}\n");
    std::map<std::string, nlohmann::json> files, devices;
    for (const auto& b : json_args(argv, "-blockdev"))
        if (b["driver"] == "file") files[b["filename"]] = b;
    for (const auto& d : json_args(argv, "-device"))
        if (d.contains("id")) devices[d["id"]] = d;
    CHECK(files["/n"]["cache"] == nlohmann::json{{"direct", true}});
    CHECK(devices["n"]["write-cache"] == "on");
    CHECK(files["/t"]["cache"] == nlohmann::json{{"direct", false}});
    CHECK(devices["t"]["write-cache"] == "off");
    CHECK(files["/b"]["cache"] == nlohmann::json{{"direct", false}});
    CHECK(devices["b"]["write-cache"] == "on");
    // Unset: QEMU's own defaults, nothing written.
    CHECK_FALSE(files["/d"].contains("cache"));
    CHECK_FALSE(devices["d"].contains("write-cache"));
    // An ephemeral disk: the image as asked; its overlay (in the state directory) QEMU's default.
    CHECK(files["/e"]["cache"] == nlohmann::json{{"direct", true}});
    for (const auto& [name, node] : files)
        if (name.find("e.overlay") != std::string::npos) CHECK_FALSE(node.contains("cache"));
}
