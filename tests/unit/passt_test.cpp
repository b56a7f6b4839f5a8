// passt NICs: the spec, QEMU's stream netdev on passt's socket, and passt's argv.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>

#include "launcher/helper_plan.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using Catch::Contains;
using nlohmann::json;

namespace {

const std::string with_passt =
    "name: vm\ninterfaces:\n"
    "  - name: pod\n    backend:\n      type: passt\n      portForwards:\n"
    "        - {hostPort: 2222, guestPort: 22}\n"
    "        - {hostPort: 5353, guestPort: 53, protocol: udp, hostAddress: 0.0.0.0}\n"
    "  - name: quiet\n    backend: {type: passt}\n";

}  // namespace

TEST_CASE("passt NICs: QEMU connects a stream netdev to passt's socket", "[passt]") {
    auto s = test::must_parse(with_passt);
    REQUIRE(s.interfaces[0].backend.type == spec::BackendType::passt);
    REQUIRE(s.interfaces[0].backend.port_forwards.size() == 2);
    auto t = topology::plan(s);
    REQUIRE(t);
    launcher::CommandOptions options;
    options.state_dir = "/state/vm";
    auto command = launcher::build_command(s, *t, options);
    REQUIRE(command);
    std::vector<json> netdevs;
    for (size_t i = 0; i + 1 < command->argv.size(); ++i)
        if (command->argv[i] == "-netdev") netdevs.push_back(json::parse(command->argv[i + 1]));
    REQUIRE(netdevs.size() == 2);
    CHECK(netdevs[0] ==
          json{{"id", "net.pod"},
               {"type", "stream"},
               {"addr", {{"type", "unix"}, {"path", "/state/vm/pod.passt/passt.sock"}}}});
    auto yaml = spec::to_yaml(s);
    REQUIRE(yaml);
    auto again = test::must_parse(*yaml);
    CHECK(again.interfaces[0].backend.type == spec::BackendType::passt);
    CHECK(again.interfaces[0].backend.port_forwards.size() == 2);
}

TEST_CASE("passt forwards exactly the spec's ports, quietly, in the foreground", "[passt]") {
    auto s = test::must_parse(with_passt);
    auto helpers = plan_helpers(s, "/state/vm", {});
    REQUIRE(helpers);
    REQUIRE(helpers->size() == 2);
    const HelperSpec& pod = (*helpers)[0];
    CHECK(pod.name == "passt-pod");
    CHECK(pod.device == "interfaces[pod]");
    CHECK(pod.package == "passt");
    CHECK(pod.dir == "/state/vm/pod.passt");
    CHECK(pod.sandboxes_itself);
    CHECK_FALSE(pod.own_namespaces);
    CHECK_FALSE(pod.socket_from_qshim);  // passt makes it; qshim waits for it to listen
    CHECK(pod.argv == std::vector<std::string>{"passt", "--foreground", "--quiet", "--socket",
                                               "/state/vm/pod.passt/passt.sock", "--tcp-ports",
                                               "127.0.0.1/2222:22", "--udp-ports", "5353:53"});
    CHECK((*helpers)[1].argv ==
          std::vector<std::string>{"passt", "--foreground", "--quiet", "--socket",
                                   "/state/vm/quiet.passt/passt.sock", "--tcp-ports", "none",
                                   "--udp-ports", "none"});
}

TEST_CASE("a passt backend takes no socket, name or fd, and is not hot-plugged yet", "[passt]") {
    auto r = spec::parse_spec(
        "name: vm\ninterfaces:\n  - name: n\n    backend: {type: passt, "
        "socket: /run/p.sock}\n",
        "vm.yaml");
    REQUIRE_FALSE(r);
    CHECK_THAT(to_string(r.error().diagnostics.at(0)),
               Contains("interfaces[0].backend: type passt takes no name, fd or socket: qshim runs "
                        "passt"));
    auto vm = test::must_parse("name: vm\n");
    auto nic = spec::parse_interface(R"({"name": "hot", "backend": {"type": "passt"}})", vm);
    REQUIRE_FALSE(nic);
    CHECK_THAT(to_string(nic.error().diagnostics.at(0)),
               Contains("hot-plugging a NIC on passt is not supported yet"));
}

TEST_CASE("every helper's socket must fit a unix socket's path", "[passt][helper]") {
    auto s = test::must_parse(with_passt);
    auto helpers = plan_helpers(s, "/" + std::string(100, 'x'), {});
    REQUIRE_FALSE(helpers);
    CHECK_THAT(helpers.error().message,
               Contains("interfaces[pod] (passt-pod): its socket /xxx") &&
                   Contains("past the 107 a unix socket can have; choose a shorter --state-dir"));
}
