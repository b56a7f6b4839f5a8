// The spec loader on bad input: every mistake is reported at its file:line:col and path, all of
// them at once, and no input crashes or hangs the loader.
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

using namespace qshim;
using namespace qshim::spec;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

// The diagnostics of a spec that must be rejected, each formatted as file:line:col: path: reason.
std::vector<std::string> problems(std::string_view text, const std::string& file = "vm.yaml") {
    auto r = parse_spec(text, file);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_spec);
    CHECK(r.error().context == "loading spec " + file);
    std::vector<std::string> out;
    size_t elsewhere = 0;
    for (const Diagnostic& d : r.error().diagnostics) {
        elsewhere += d.file != file;
        out.push_back(to_string(d));
    }
    CHECK(elsewhere == 0);
    REQUIRE_FALSE(out.empty());
    return out;
}

// The single diagnostic of a spec with one mistake.
std::string problem(std::string_view text, const std::string& file = "vm.yaml") {
    auto all = problems(text, file);
    INFO(fmt::format("{}", fmt::join(all, "\n")));
    REQUIRE(all.size() == 1);
    return all[0];
}

// "name: vm" plus one interface per backend given.
std::string with_backend(std::string_view backend) {
    return fmt::format("name: vm\ninterfaces:\n  - name: n\n    backend: {}\n", backend);
}

struct TempDir {
    fs::path path = fs::temp_directory_path() / fmt::format("qshim-spec-bad-{}", getpid());
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string& name, std::string_view text) const {
        std::ofstream(path / name, std::ios::binary) << text;
        return (path / name).string();
    }
};

// Hostile input that once made the loader hang or go quadratic (expanding aliases, rescanning a
// 1 MiB file). A relapse shows as the test binary's timeout (meson's, 180 s): no wall-clock
// bound here, since build types and machines differ tenfold (speed is the benchmarks' job).
template <typename F>
void hostile(F f) {
    f();
}

}  // namespace

TEST_CASE("diagnostics format as file:line:col: path: reason", "[spec][bad]") {
    CHECK(to_string(Diagnostic{"vm.yaml", 3, 10, "cpu.cores", "is wrong"}) ==
          "vm.yaml:3:10: cpu.cores: is wrong");
    CHECK(to_string(Diagnostic{"vm.yaml", 1, 1, "", "is wrong"}) == "vm.yaml:1:1: is wrong");
    CHECK(to_string(Diagnostic{"vm.yaml", 0, 0, "", "too big"}) == "vm.yaml: too big");
}

TEST_CASE("every problem is reported, in document order", "[spec][bad]") {
    auto all = problems(
        "name: vm\ncpu:\n  sockets: two\n  cores: 0\nmemory: {size: 1G}\n"
        "disks: [{name: d, path: d.img, format: vmdk}]\n");
    CHECK(all == std::vector<std::string>{
                     "vm.yaml:3:12: cpu.sockets: must be a whole number from 1 to 255",
                     "vm.yaml:4:10: cpu.cores: 0 is out of range: must be from 1 to 255",
                     "vm.yaml:5:16: memory.size: must be a size such as 512Mi or 4Gi (suffix Ki, "
                     "Mi, Gi or Ti)",
                     "vm.yaml:6:40: disks[0].format: must be one of raw, qcow2",
                 });
    SECTION("cross-field rules sort in among the field rules") {
        auto cross = problems(
            "name: vm\ninterfaces:\n- {name: a, mac: \"52:54:00:00:00:01\", backend: {type: "
            "user}}\n"
            "- {name: b, mac: \"52:54:00:00:00:01\", backend: {type: user}, bootOrder: 0}\n");
        CHECK(cross ==
              std::vector<std::string>{
                  "vm.yaml:4:18: interfaces[1].mac: MAC 52:54:00:00:00:01 is also used by "
                  "interfaces[0].mac",
                  "vm.yaml:4:73: interfaces[1].bootOrder: 0 is out of range: must be from 1 to 999",
              });
    }
}

TEST_CASE("malformed YAML is reported where the parser stopped", "[spec][bad][yaml]") {
    CHECK(problem("name: vm\ncpu: {cores: [1\n") ==
          "vm.yaml:3:1: malformed YAML: end of sequence flow not found");
    CHECK(problem("name: vm\n  cpu: x\n") == "vm.yaml:2:6: malformed YAML: illegal map value");
    CHECK(problem("name: vm\ndisks: [{name: d}\ncpu: {}\n") ==
          "vm.yaml:3:1: malformed YAML: end of sequence flow not found");
}

TEST_CASE("malformed JSON is reported at its line and column", "[spec][bad][json]") {
    CHECK(problem("{\"name\": \"vm\",}", "vm.json") ==
          "vm.json:1:15: malformed JSON: syntax error while parsing object key - unexpected '}'; "
          "expected string literal");
    CHECK_THAT(problem("{\n  \"name\": \"vm\" // the name\n}", "vm.json"),
               Catch::StartsWith("vm.json:2:16: malformed JSON"));
    CHECK_THAT(
        problem("{\n  \"name\": \"vm\",\n  \"cpu\": {", "vm.json"),
        Catch::StartsWith("vm.json:3:11: malformed JSON") && Contains("unexpected end of input"));
    CHECK_THAT(problem("{\"name\": \"vm\"} {}", "vm.json"),
               Catch::StartsWith("vm.json:1:16: malformed JSON"));
}

TEST_CASE("values of the wrong type", "[spec][bad][types]") {
    CHECK(problem("name: vm\ncpu: {cores: two}\n") ==
          "vm.yaml:2:14: cpu.cores: must be a whole number from 1 to 255");
    CHECK(problem("name: vm\ncpu: {cores: \"2\"}\n") ==
          "vm.yaml:2:14: cpu.cores: must be a whole number from 1 to 255");
    CHECK(problem("{\"name\": \"vm\", \"cpu\": {\"cores\": \"2\"}}", "vm.json") ==
          "vm.json:1:33: cpu.cores: must be a whole number from 1 to 255");
    CHECK(problem("name: vm\ncpu: [1, 2]\n") == "vm.yaml:2:6: cpu: must be a map, not a list");
    CHECK(problem("name: vm\ndisks: {name: d}\n") ==
          "vm.yaml:2:8: disks: must be a list, not a map");
    CHECK(problem("name: vm\ndisks: [d]\n") ==
          "vm.yaml:2:9: disks[0]: must be a map, not a scalar");
    CHECK(problem("name: 42\n") ==
          "vm.yaml:1:7: name: must be a string; quote it (\"42\") if '42' is meant");
    CHECK(problem("name: vm\ncpu: {model: 1.5}\n") ==
          "vm.yaml:2:14: cpu.model: must be a string; quote it (\"1.5\") if '1.5' is meant");
    CHECK(problem("name: vm\nboot: {kernel: true}\n") ==
          "vm.yaml:2:16: boot.kernel: must be a string; quote it (\"true\") if 'true' is meant");
    CHECK(problem("name: [vm]\n") == "vm.yaml:1:7: name: must be a string, not a list");
    CHECK(problem("name: vm\ndevices: {rng: yes}\n") ==
          "vm.yaml:2:16: devices.rng: must be true or false");
    CHECK(problem("name: vm\nmachine: {accel: hvf}\n") ==
          "vm.yaml:2:18: machine.accel: must be one of auto, kvm, tcg");
    CHECK(problem("name: vm\ndisks: ~\n") == "vm.yaml:2:8: disks: must be a list, not null");
}

TEST_CASE("numbers out of range", "[spec][bad][range]") {
    CHECK(problem("name: vm\ncpu: {cores: 0}\n") ==
          "vm.yaml:2:14: cpu.cores: 0 is out of range: must be from 1 to 255");
    CHECK(problem("name: vm\ncpu: {cores: 256}\n") ==
          "vm.yaml:2:14: cpu.cores: 256 is out of range: must be from 1 to 255");
    CHECK(problem("name: vm\ncpu: {cores: 18446744073709551616}\n") ==
          "vm.yaml:2:14: cpu.cores: must be a whole number from 1 to 255");
    CHECK(problem("name: vm\ncpu: {cores: 4294967297}\n") ==  // 2^32 + 1 must not wrap to 1
          "vm.yaml:2:14: cpu.cores: 4294967297 is out of range: must be from 1 to 255");
    CHECK(problem("{\"name\": \"vm\", \"cpu\": {\"cores\": 1e999}}", "vm.json") ==
          "vm.json:1:37: malformed JSON: number overflow parsing '1e999'");
    CHECK(problem("name: vm\ncpu: {cores: -1}\n") ==
          "vm.yaml:2:14: cpu.cores: must be a whole number from 1 to 255");
    CHECK(problem("name: vm\ncpu: {sockets: 16, cores: 16}\n") ==
          "vm.yaml:2:6: cpu: sockets x cores x threads = 256 vCPUs; q35 supports at most 255");
    CHECK(problem("name: vm\nmemory: {size: 15Mi}\n") ==
          "vm.yaml:2:16: memory.size: must be from 16Mi to 4Ti");
    CHECK(problem("name: vm\nmemory: {size: 4097Gi}\n") ==
          "vm.yaml:2:16: memory.size: must be from 16Mi to 4Ti");
    CHECK(problem("name: vm\nmemory: {size: 1025Ki}\n") ==
          "vm.yaml:2:16: memory.size: must be a whole number of MiB");
    CHECK_THAT(problem("name: vm\nmemory: {size: 16777216Ti}\n"),
               Catch::StartsWith("vm.yaml:2:16: memory.size: must be a size"));
    CHECK_THAT(problem("name: vm\nhotplug: {disks: 65}\n"),
               Catch::StartsWith("vm.yaml:2:18: hotplug.disks: 65 is out of range"));
}

TEST_CASE("unknown and missing fields", "[spec][bad][fields]") {
    CHECK(
        problem(
            "name: vm\ndisks:\n  - name: d\n    path: d.img\n    format: raw\n    bootOrdr: 1\n") ==
        "vm.yaml:6:5: disks[0].bootOrdr: unknown field (did you mean 'bootOrder'?)");
    CHECK(problem("name: vm\nmemroy: {size: 1Gi}\n") ==
          "vm.yaml:2:1: memroy: unknown field (did you mean 'memory'?)");
    CHECK(problem("name: vm\nflavour: large\n") == "vm.yaml:2:1: flavour: unknown field");
    CHECK(problem("cpu: {cores: 2}\n") == "vm.yaml:1:1: name: is required");
    CHECK(problem("name: vm\nmemory: {}\n") == "vm.yaml:2:9: memory.size: is required");
    CHECK(problems("name: vm\ndisks:\n  - bus: scsi\n") ==
          std::vector<std::string>{
              "vm.yaml:3:5: disks[0].name: is required",
              "vm.yaml:3:5: disks[0].path: is required",
              "vm.yaml:3:5: disks[0].format: is required",
          });
    CHECK(problem(with_backend("{name: tap0}")) ==
          "vm.yaml:4:14: interfaces[0].backend.type: is required");
    CHECK(problem("name: vm\ninterfaces: [{name: n}]\n") ==
          "vm.yaml:2:14: interfaces[0].backend: is required");
}

TEST_CASE("duplicate keys, names, serials, MACs and boot orders", "[spec][bad][duplicates]") {
    CHECK(problem("name: vm\ncpu: {cores: 1}\nname: vm2\n") == "vm.yaml:3:1: duplicate key 'name'");
    CHECK(problem("{\"name\": \"vm\", \"name\": \"vm\"}", "vm.json") ==
          "vm.json:1:16: duplicate key 'name'");
    const char* disks =
        "name: vm\ndisks:\n  - {name: d, path: a.img, format: raw, serial: S1, bootOrder: 1}\n";
    CHECK(problem(disks + std::string("  - {name: d, path: b.img, format: raw, serial: S2}\n")) ==
          "vm.yaml:4:12: disks[1].name: name 'd' is also used by disks[0].name");
    CHECK(problem(disks + std::string("  - {name: e, path: b.img, format: raw, serial: S1}\n")) ==
          "vm.yaml:4:49: disks[1].serial: serial 'S1' is also used by disks[0].serial");
    CHECK(problem(
              disks +
              std::string("  - {name: e, path: b.img, format: raw, serial: S2, bootOrder: 1}\n")) ==
          "vm.yaml:4:64: disks[1].bootOrder: bootOrder 1 is also used by disks[0].bootOrder");
    CHECK(problem(disks + std::string("interfaces: [{name: d, backend: {type: user}}]\n")) ==
          "vm.yaml:4:21: interfaces[0].name: name 'd' is also used by disks[0].name");
    CHECK(
        problem(disks + std::string("hostDevices: [{name: d, hostAddress: \"0000:01:00.0\"}]\n")) ==
        "vm.yaml:4:22: hostDevices[0].name: name 'd' is also used by disks[0].name");
    CHECK(problem(disks +
                  std::string("interfaces: [{name: n, backend: {type: user}, bootOrder: 1}]\n")) ==
          "vm.yaml:4:58: interfaces[0].bootOrder: bootOrder 1 is also used by disks[0].bootOrder");
    // A serial defaults to the name, so it collides with another disk's explicit serial.
    CHECK(problem("name: vm\ndisks:\n  - {name: a, path: a.img, format: raw, serial: b}\n"
                  "  - {name: b, path: b.img, format: raw}\n") ==
          "vm.yaml:4:5: disks[1].serial: serial 'b' is also used by disks[0].serial");
    CHECK(
        problem("name: vm\ninterfaces:\n  - {name: a, mac: \"52:54:00:00:00:01\", backend: {type: "
                "user}}\n"
                "  - {name: b, mac: \"52:54:00:00:00:01\", backend: {type: user}}\n") ==
        "vm.yaml:4:20: interfaces[1].mac: MAC 52:54:00:00:00:01 is also used by interfaces[0].mac");
    // An explicit MAC that equals another interface's derived one points at the derivation.
    CHECK(problem("name: vm\ninterfaces:\n  - {name: n, mac: \"52:54:00:4f:20:74\", backend: "
                  "{type: user}}\n"
                  "  - {name: net0, backend: {type: user}}\n") ==
          "vm.yaml:4:5: interfaces[1].mac: MAC 52:54:00:4f:20:74 (derived from the names; set mac "
          "explicitly) "
          "is also used by interfaces[0].mac");
}

TEST_CASE("bad MACs, PCI addresses, names and serials", "[spec][bad][values]") {
    CHECK(problem(with_backend("{type: user}\n    mac: \"52-54-00-00-00-01\"")) ==
          "vm.yaml:5:10: interfaces[0].mac: must be six hex bytes separated by ':' "
          "(52:54:00:12:34:56)");
    CHECK(problem(with_backend("{type: user}\n    mac: \"01:00:5e:00:00:01\"")) ==
          "vm.yaml:5:10: interfaces[0].mac: is a multicast address; a NIC needs a unicast one");
    const char* disk = "name: vm\ndisks:\n  - name: d\n    path: d.img\n    format: raw\n";
    CHECK(problem(disk + std::string("    pciAddress: \"00:05.0\"\n")) ==
          "vm.yaml:6:17: disks[0].pciAddress: must be a PCI address DDDD:BB:SS.F (hex, slot at "
          "most 1f)");
    CHECK(problem(disk + std::string("    pciAddress: \"0000:00:20.0\"\n")) ==
          "vm.yaml:6:17: disks[0].pciAddress: must be a PCI address DDDD:BB:SS.F (hex, slot at "
          "most 1f)");
    CHECK(problem("name: vm\nhostDevices: [{name: h, hostAddress: \"0000:65:00.9\"}]\n") ==
          "vm.yaml:2:38: hostDevices[0].hostAddress: must be a PCI address DDDD:BB:SS.F (hex, slot "
          "at most 1f)");
    for (const std::string& name :
         std::vector<std::string>{"Web", "web_1", "-web", "web-", "\"\"", std::string(64, 'a')})
        CHECK(problem(fmt::format("name: {}\n", name)) ==
              "vm.yaml:1:7: name: must be a DNS label: lowercase letters, digits and '-', at most "
              "63 characters");
    CHECK(problem("name: vm\ndisks: [{name: 1d, path: d.img, format: raw}]\n") ==
          "vm.yaml:2:16: disks[0].name: must be a DNS label that starts with a letter (it becomes "
          "the QEMU device id)");
    CHECK(problem(disk + std::string("    serial: abcdefghijklmnopqrstu\n")) ==
          "vm.yaml:6:13: disks[0].serial: must be 1 to 20 characters from A-Z a-z 0-9 . _ + : -");
    CHECK(problem(disk + std::string("    serial: \"a b\"\n")) ==
          "vm.yaml:6:13: disks[0].serial: must be 1 to 20 characters from A-Z a-z 0-9 . _ + : -");
    CHECK(problem(
              "name: vm\ndisks:\n  - {name: abcdefghijklmnopqrstu, path: d.img, format: raw}\n") ==
          "vm.yaml:3:5: disks[0].serial: defaults to the name, which is longer than 20 characters "
          "(the "
          "virtio-blk limit); set serial explicitly");
    CHECK(problem("name: vm\ndisks: [{name: d, path: \"a\\0b\", format: raw}]\n") ==
          "vm.yaml:2:25: disks[0].path: must not contain a NUL byte");
    CHECK(problem("name: vm\ndisks: [{name: d, path: \"\", format: raw}]\n") ==
          "vm.yaml:2:25: disks[0].path: must not be empty");
}

TEST_CASE("rules between fields", "[spec][bad][rules]") {
    CHECK(problem(with_backend("{type: tap}")) ==
          "vm.yaml:4:14: interfaces[0].backend: type tap needs exactly one of name or fd");
    CHECK(problem(with_backend("{type: tap, name: tap0, fd: 3}")) ==
          "vm.yaml:4:14: interfaces[0].backend: type tap needs exactly one of name or fd");
    CHECK(problem(with_backend("{type: stream}")) ==
          "vm.yaml:4:14: interfaces[0].backend.socket: is required for type stream");
    CHECK(problem(with_backend("{type: user, socket: /run/passt.sock}")) ==
          "vm.yaml:4:14: interfaces[0].backend: type user takes no name, fd or socket");
    CHECK(problem(with_backend("{type: tap, name: tap0, fd: 2}")) ==
          "vm.yaml:4:42: interfaces[0].backend.fd: 2 is out of range: must be from 3 to 65535");
    CHECK(
        problem("name: vm\ndisks: [{name: cd, path: a.iso, format: raw, device: cdrom}]\n") ==
        "vm.yaml:2:54: disks[0].device: a cdrom needs bus scsi or sata (virtio-blk has no cdrom)");
    CHECK(problem("name: vm\nboot: {kernel: k, cmdline: \"quiet\\nroot=/dev/sda\"}\n") ==
          "vm.yaml:2:28: boot.cmdline: must not contain control characters");
    CHECK(problem("name: vm\nboot: {cmdline: quiet}\n") ==
          "vm.yaml:2:7: boot.kernel: is required when initrd or cmdline is set");
    CHECK(problem("name: vm\nmachine:\n  topologyVersion: 2\n") ==
          "vm.yaml:3:20: machine.topologyVersion: topology version 2 is not known to this qshim "
          "(it knows 1)");
}

TEST_CASE("YAML features a spec does not allow", "[spec][bad][yaml]") {
    CHECK(problem("name: &n vm\n") ==
          "vm.yaml:1:7: YAML anchors (&name) are not supported in a VM spec");
    CHECK(problem("name: vm\ncpu: !!map {cores: 1}\n") ==
          "vm.yaml:2:6: YAML tags (tag:yaml.org,2002:map) are not supported in a VM spec");
    CHECK(problem("name: !secret vm\n") ==
          "vm.yaml:1:7: YAML tags (!secret) are not supported in a VM spec");
    CHECK(problem("name: vm\n---\nname: vm2\n") ==
          "vm.yaml:2:1: file holds several YAML documents; a spec is one");
    CHECK(problem("? [a]\n: b\nname: vm\n") == "vm.yaml:1:3: map keys must be plain strings");
    hostile([] {
        std::string laughs = "name: vm\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
        for (int i = 1; i < 10; ++i)
            laughs +=
                fmt::format("l{0}: &l{0} [*l{1}, *l{1}, *l{1}, *l{1}, *l{1}, *l{1}]\n", i, i - 1);
        CHECK(problem(laughs) ==
              "vm.yaml:2:5: YAML anchors (&name) are not supported in a VM spec");
    });
}

TEST_CASE("deep nesting is a clean error, not a stack overflow", "[spec][bad][depth]") {
    const std::string depth = "document is nested deeper than 32 levels";
    hostile([&] {
        CHECK(problem(std::string(10000, '['), "vm.json") == "vm.json:1:33: " + depth);
        CHECK(problem("{\"name\": \"vm\",\n \"x\": " + std::string(10000, '[') +
                          std::string(10000, ']') + "}",
                      "vm.json") == "vm.json:2:38: " + depth);
        CHECK(problem(std::string(10000, '[') + std::string(10000, ']')) ==
              "vm.yaml:1:33: " + depth);
        CHECK_THAT(problem(std::string(10000, '[')), Catch::EndsWith(depth));  // unterminated
        std::string maps;  // each level one column deeper
        for (int i = 0; i < 1000; ++i) maps += std::string(i, ' ') + "a:\n";
        CHECK(problem(maps) == "vm.yaml:33:33: " + depth);
        std::string flow;
        for (int i = 0; i < 10000; ++i) flow += "{a: ";
        CHECK_THAT(problem(flow), Catch::EndsWith(depth));
    });
}

TEST_CASE("not a spec at all", "[spec][bad][document]") {
    const std::string map = "a spec must be a map of fields (name: ..., disks: ...)";
    CHECK(problem("") == "vm.yaml:1:1: " + map);
    CHECK(problem("\n# only a comment\n") == "vm.yaml:1:1: " + map);
    CHECK(problem("- name: vm\n") == "vm.yaml:1:1: " + map);
    CHECK(problem("[{\"name\": \"vm\"}]", "vm.json") == "vm.json:1:1: " + map);
    CHECK(problem("  just text\n") == "vm.yaml:1:3: " + map);
    CHECK(problem(std::string("name: vm\ncpu:\0 {}\n", 17)) ==
          "vm.yaml:2:5: file contains a NUL byte; a spec is text");
    CHECK(problem(std::string("{\"name\": \"vm\0\"}", 15), "vm.json") ==
          "vm.json:1:13: file contains a NUL byte; a spec is text");
    // Invalid UTF-8: a stray byte, an overlong '/', a surrogate, past U+10FFFF, a cut sequence.
    for (const char* bad :
         {"k\xff", "k\xc0\xaf", "k\xed\xa0\x80", "k\xf4\x90\x80\x80", "k\xe2\x82"})
        CHECK(problem(fmt::format("name: vm\nboot: {{kernel: {}}}\n", bad)) ==
              "vm.yaml:2:17: file is not valid UTF-8 text");
    CHECK(problem("{\"name\": \"vm\xff\"}", "vm.json") ==
          "vm.json:1:13: file is not valid UTF-8 text");
    CHECK(problem("name: \"\\ud800\"\n") == "vm.yaml:1:14: malformed YAML: invalid unicode: 55296");
    CHECK(
        problem("", "vm.json") ==
        "vm.json:1:1: malformed JSON: syntax error while parsing value - unexpected end of input; "
        "expected '[', '{', or a literal");
}

TEST_CASE("oversized input is refused before parsing", "[spec][bad][size]") {
    std::string big = "name: vm\n" + std::string(max_spec_bytes, '#') + "\n";
    hostile([&] {
        CHECK(problem(big, "big.yaml") ==
              fmt::format("big.yaml: file is {} bytes; a spec may be at most 1048576 bytes",
                          big.size()));
    });
    // Exactly the limit is allowed.
    std::string limit = "name: vm\n#" + std::string(max_spec_bytes - 11, '#') + "\n";
    REQUIRE(limit.size() == max_spec_bytes);
    CHECK(parse_spec(limit, "vm.yaml").ok());

    TempDir dir;
    auto r = load_spec(dir.write("big.yaml", big));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_spec);
    REQUIRE(r.error().diagnostics.size() == 1);
    CHECK(to_string(r.error().diagnostics[0]) ==
          (dir.path / "big.yaml").string() +
              ": file is larger than 1048576 bytes, the most a spec may be");
    CHECK(load_spec(dir.write("limit.yaml", limit)).ok());
}

TEST_CASE("many keys and long scalars stay fast", "[spec][bad][size]") {
    hostile([] {
        std::string keys = "name: vm\n";
        for (int i = 0; keys.size() < 900'000; ++i) keys += fmt::format("k{:x}: 0\n", i);
        auto all = problems(keys);
        CHECK(all.size() > 90'000);
        CHECK(all.front() == "vm.yaml:2:1: k0: unknown field");
        // A plain scalar of digits is a number to YAML; checking that must not recurse per digit.
        CHECK_THAT(problem("name: " + std::string(900'000, '1') + "\n"),
                   Catch::StartsWith("vm.yaml:1:7: name: must be a string"));
        CHECK_THAT(problem("name: vm\nboot: {kernel: " + std::string(500'000, '7') + "}\n"),
                   Catch::StartsWith("vm.yaml:2:16: boot.kernel: must be a string"));
    });
}

TEST_CASE("YAML escapes decode to UTF-8, even those yaml-cpp gets wrong", "[spec][bad][document]") {
    // yaml-cpp 0.7 turns \N and \_ into the bare bytes 0x85 and 0xA0 (found by plan-fuzz: the
    // spec loaded, then its command line could not be written as JSON).
    auto r = parse_spec(
        "name: vm\nboot: {kernel: \"/k\\_e\\Nr\\x85n\\u00A0el\", cmdline: \"a\\_b\"}\n", "vm.yaml");
    REQUIRE(r.ok());
    CHECK(r->boot.kernel == "/k\u00a0e\u0085r\u0085n\u00a0el");
    CHECK(r->boot.cmdline == "a\u00a0b");
    auto json = to_json(*r);
    REQUIRE(json.ok());
    // Many of them stay linear.
    hostile([] {
        std::string many = "name: vm\nboot: {kernel: \"/k";
        while (many.size() < 900'000) many += "\\_\\N";
        many += "\"}\n";
        auto big = parse_spec(many, "vm.yaml");
        REQUIRE(big.ok());
        CHECK(big->boot.kernel.substr(0, 6) == "/k\u00a0\u0085");
    });
}

TEST_CASE("files that cannot be read are I/O errors", "[spec][bad][io]") {
    TempDir dir;
    auto missing = load_spec((dir.path / "missing.yaml").string());
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::io);
    CHECK(missing.error().context == "loading spec " + (dir.path / "missing.yaml").string());
    CHECK_THAT(missing.error().message, Contains("No such file or directory"));

    auto folder = load_spec(dir.path.string());
    REQUIRE_FALSE(folder.ok());
    CHECK(folder.error().code == Errc::io);
    CHECK(folder.error().message == "not a regular file");

    auto bad = load_spec(dir.write("bad.yaml", "name: vm\ncpu: {cores: 0}\n"));
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == Errc::invalid_spec);
    REQUIRE(bad.error().diagnostics.size() == 1);
    CHECK(to_string(bad.error().diagnostics[0]) ==
          (dir.path / "bad.yaml").string() +
              ":2:14: cpu.cores: 0 is out of range: must be from 1 to 255");
}

TEST_CASE("security: QEMU never runs as root, and the seccomp mode is one of four", "[spec][bad]") {
    CHECK(problem("name: vm\nsecurity: {runAs: {uid: 0, gid: 107}}\n") ==
          "vm.yaml:2:25: security.runAs.uid: must not be 0: QEMU never runs as root (a guest that "
          "takes QEMU over would own the host); use an unprivileged uid such as 107");
    CHECK_THAT(problem("name: vm\nsecurity: {runAs: {uid: 107, gid: 0}}\n"),
               Contains("security.runAs.gid: must not be 0"));
    CHECK_THAT(problem("name: vm\nsecurity: {runAs: {uid: 107}}\n"),
               Contains("security.runAs.gid: is required"));
    CHECK_THAT(problem("name: vm\nsecurity: {runAs: {uid: 4294967295, gid: 1}}\n"),
               Contains("security.runAs.uid: 4294967295 is out of range"));
    CHECK_THAT(problem("name: vm\nsecurity: {seccomp: strict}\n"),
               Contains("security.seccomp: must be one of enforce, kill, log, off"));
    CHECK_THAT(problem("name: vm\nsecurity: {runas: {uid: 1, gid: 1}}\n"),
               Contains("security.runas: unknown field (did you mean 'runAs'?)"));
}

TEST_CASE("security: defaults, and what is read", "[spec]") {
    auto plain = parse_spec("name: vm\n", "vm.yaml");
    REQUIRE(plain.ok());
    CHECK_FALSE(plain->security.run_as.has_value());  // decided at launch: 107, or qshim's ids
    CHECK(plain->security.seccomp == SeccompMode::enforce);
    auto set = parse_spec("name: vm\nsecurity: {runAs: {uid: 4242, gid: 4343}, seccomp: log}\n",
                          "vm.yaml");
    REQUIRE(set.ok());
    CHECK(set->security.run_as == RunAs{4242, 4343});
    CHECK(set->security.seccomp == SeccompMode::log);
    auto yaml = to_yaml(*set);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml,
               Contains("security:\n  runAs:\n    uid: 4242\n    gid: 4343\n  seccomp: \"log\""));
    auto again = parse_spec(*yaml, "vm.yaml");
    REQUIRE(again.ok());
    CHECK(again->security.run_as == RunAs{4242, 4343});
}

TEST_CASE("CPU placement, IOThreads, NUMA and huge pages: each mistake named at its field",
          "[placement]") {
    CHECK(problem("name: vm\ncpu: {isolateEmulatorThread: true}\n") ==
          "vm.yaml:2:30: cpu.isolateEmulatorThread: needs cpu.dedicated: true (with cpu.pinning, "
          "name the emulator's CPUs in cpu.pinning.emulator)");
    CHECK_THAT(problem("name: vm\ncpu: {dedicated: true, pinning: {vcpus: [1]}}\n"),
               Contains("cpu.pinning: cannot be combined with cpu.dedicated"));
    CHECK(problem("name: vm\ncpu: {cores: 2, pinning: {vcpus: [1]}}\n") ==
          "vm.yaml:2:34: cpu.pinning.vcpus: names 1 host CPUs for 2 vCPUs (sockets x cores x "
          "threads); give one per vCPU");
    CHECK(problem("name: vm\ncpu: {cores: 2, pinning: {vcpus: [1, 1]}}\n") ==
          "vm.yaml:2:38: cpu.pinning.vcpus[1]: host CPU 1 is given to two vCPUs; each vCPU gets "
          "its own");
    CHECK(problem("name: vm\ncpu: {pinning: {vcpus: [x]}}\n") ==
          "vm.yaml:2:25: cpu.pinning.vcpus[0]: must be a host CPU number");
    CHECK(problem("name: vm\ncpu: {pinning: {vcpus: [0], emulator: 3-1}}\n") ==
          "vm.yaml:2:39: cpu.pinning.emulator: must be a list of host CPUs such as \"0-3,8\"");
    CHECK_THAT(problem("name: vm\ncpu: {pinning: {vcpus: [0], iothreads: 1}}\n"),
               Contains("cpu.pinning.iothreads: names CPUs for IOThreads, but the spec has "
                        "iothreads: 0"));
    CHECK(problem("name: vm\niothreads: 1\ndisks:\n  - {name: d, path: /d, format: raw, "
                  "iothread: 1}\n") ==
          "vm.yaml:4:48: disks[0].iothread: IOThread 1 does not exist: the spec has iothreads: 1");
    CHECK_THAT(problem("name: vm\niothreads: 1\ndisks:\n  - {name: d, path: /d, format: raw, "
                       "bus: sata, iothread: 0}\n"),
               Contains("disks[0].iothread: a sata disk cannot use an IOThread"));
    CHECK_THAT(problem("name: vm\niothreads: 2\ndisks:\n"
                       "  - {name: a, path: /a, format: raw, bus: scsi, iothread: 0}\n"
                       "  - {name: b, path: /b, format: raw, bus: scsi, iothread: 1}\n"),
               Contains("disks[1].iothread: scsi disks share one controller, which "
                        "disks[0].iothread puts on IOThread 0"));
    CHECK(problem("name: vm\niothreads: 65\n") ==
          "vm.yaml:2:12: iothreads: 65 is out of range: must be from 0 to 64");
    CHECK(problem("name: vm\nmemory: {size: 1Gi, hugepages: 4Mi}\n") ==
          "vm.yaml:2:32: memory.hugepages: must be one of none, 2Mi, 1Gi");
    CHECK_THAT(problem("name: vm\nmemory: {size: 1536Mi, hugepages: 1Gi}\n"),
               Contains("memory.size: 1536Mi is not a whole number of 1Gi huge pages"));
    CHECK_THAT(problem("name: vm\nnuma: {guestNodes: auto}\n"),
               Contains("numa.guestNodes: auto mirrors the host NUMA nodes of the vCPUs' CPUs, so "
                        "it needs cpu.dedicated or cpu.pinning"));
    CHECK(problem("name: vm\nnuma: {guestNodes: []}\n") ==
          "vm.yaml:2:20: numa.guestNodes: must be auto or a non-empty list of nodes");
}

TEST_CASE("NUMA nodes must cover every vCPU once and all of memory", "[placement]") {
    auto all = problems(
        "name: vm\ncpu: {cores: 3}\nmemory: {size: 1Gi}\nnuma:\n  guestNodes:\n"
        "    - {vcpus: 0-1, memory: 256Mi}\n"
        "    - {vcpus: 1-3, memory: 512Mi}\n");
    CHECK_THAT(
        fmt::format("{}", fmt::join(all, "\n")),
        Contains("numa.guestNodes[1].vcpus: vCPU 1 is also in numa.guestNodes[0]") &&
            Contains("numa.guestNodes[1].vcpus: vCPU 3 does not exist: the VM has 3 (0-2)") &&
            Contains("numa.guestNodes: the nodes' memory adds up to 768 MiB, but "
                     "memory.size is 1024 MiB"));
    CHECK_THAT(problem("name: vm\ncpu: {cores: 3}\nmemory: {size: 1Gi}\nnuma:\n  guestNodes:\n"
                       "    - {vcpus: 0-1, memory: 1Gi}\n"),
               Contains("numa.guestNodes: vCPUs 2 are in no node; every vCPU must be in one"));
    CHECK(problems("name: vm\nmemory: {size: 1Gi, hugepages: 1Gi}\nnuma:\n  guestNodes:\n"
                   "    - {vcpus: 0, memory: 1000Mi}\n    - {vcpus: 0, memory: 24Mi}\n") ==
          std::vector<std::string>{
              "vm.yaml:5:7: numa.guestNodes[0].memory: 1000Mi is not a whole number of huge pages",
              "vm.yaml:6:7: numa.guestNodes[1].memory: 24Mi is not a whole number of huge pages",
              "vm.yaml:6:7: numa.guestNodes[1].vcpus: vCPU 0 is also in numa.guestNodes[0]"});
}
