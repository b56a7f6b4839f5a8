// filesystems: host folders shared over virtio-fs. What a share carries, and what it refuses.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::spec;
using Catch::Contains;
using test::problem;
using test::problems;

TEST_CASE("a filesystem: a folder, a tag the guest mounts, read-only or not", "[spec][virtio-fs]") {
    auto s = test::must_parse(
        "name: vm\nfilesystems:\n  - {name: share, path: data}\n"
        "  - {name: conf, path: /etc/app, tag: app-config, readOnly: true}\n");
    REQUIRE(s.filesystems.size() == 2);
    CHECK(s.filesystems[0].path == "/specs/data");  // relative to the spec's folder
    CHECK(s.filesystems[0].path_as_written == "data");
    CHECK(s.filesystems[0].tag == "share");  // the name by default
    CHECK_FALSE(s.filesystems[0].read_only);
    CHECK(s.filesystems[1].tag == "app-config");
    CHECK(s.filesystems[1].read_only);
    auto yaml = to_yaml(s);
    REQUIRE(yaml);
    auto again = test::must_parse(*yaml);
    REQUIRE(again.filesystems.size() == 2);
    CHECK(again.filesystems[1].tag == "app-config");
    CHECK(again.filesystems[1].path == "/etc/app");
    CHECK(again.filesystems[1].read_only);
}

TEST_CASE("bad filesystems are refused by path", "[spec][virtio-fs]") {
    CHECK_THAT(problem("name: vm\nfilesystems:\n  - {name: share}\n"),
               Contains("filesystems[0].path: is required"));
    CHECK_THAT(problem("name: vm\nfilesystems:\n  - {name: share, path: /s, tag: "
                       "a-tag-of-thirty-seven-bytes-is-too-long}\n"),
               Contains("filesystems[0].tag: is 39 bytes long; virtio-fs takes at most 36"));
    CHECK_THAT(
        problem("name: vm\nfilesystems:\n  - name: a-name-of-thirty-seven-bytes-is-too-long\n"
                "    path: /s\n"),
        Contains("filesystems[0].tag: defaults to the name, which is longer than the 36 "
                 "bytes virtio-fs takes; set tag explicitly"));
    CHECK_THAT(problem("name: vm\nfilesystems:\n  - {name: share, path: /s, tag: \"a b\"}\n"),
               Contains("filesystems[0].tag: must be 1 or more of A-Z a-z 0-9 - _ ."));
    CHECK_THAT(problem("name: vm\nfilesystems:\n  - {name: one, path: /a, tag: same}\n"
                       "  - {name: two, path: /b, tag: same}\n"),
               Contains("vm.yaml:4:32: filesystems[1].tag: tag 'same' is also used by "
                        "filesystems[0].tag"));
    CHECK_THAT(problem("name: vm\ndisks:\n  - {name: data, path: /d, format: raw}\n"
                       "filesystems:\n  - {name: data, path: /a}\n"),
               Contains("filesystems[0].name: name 'data' is also used by disks[0].name"));
    CHECK_THAT(problem("name: vm\nfilesystems:\n  - {name: s, path: /a, cache: always}\n"),
               Contains("filesystems[0].cache: unknown field"));
    CHECK_THAT(problem("name: vm\nfilesystems: {name: s}\n"),
               Contains("filesystems: must be a list"));
}
