// Local-VM pieces of the launcher: the cloud-init seed, the state directory, and what the
// command line says about firmware, seeds, overlays and port forwards.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <qshim/fingerprint.hpp>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>
#include <sstream>

#include "launcher/cloud_init_seed.hpp"
#include "launcher/iso_image.hpp"
#include "launcher/preflight.hpp"
#include "launcher/state_dir.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using Catch::Contains;
using Catch::StartsWith;
using qshim::test::must_parse;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path = fs::temp_directory_path() / fmt::format("qshim-local-{}", getpid());
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string& name, std::string_view text) const {
        std::ofstream(path / name, std::ios::binary) << text;
        return (path / name).string();
    }
};

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> argv_for(const spec::VmSpec& s, launcher::CommandOptions options = {}) {
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

const nlohmann::json* node(const std::vector<nlohmann::json>& nodes, const std::string& name) {
    for (const auto& n : nodes)
        if (n.value("node-name", "") == name) return &n;
    return nullptr;
}

QemuIdentity me() { return {{getuid(), getgid()}, false}; }

}  // namespace

TEST_CASE("seed files: meta-data gains an instance-id that follows the content") {
    spec::CloudInit c;
    c.user_data = {"#cloud-config\nhostname: h\n", "", true};
    auto files = seed_files(c, "vm1");
    REQUIRE(files.ok());
    CHECK(files->at("user-data") == "#cloud-config\nhostname: h\n");
    CHECK_FALSE(files->count("network-config"));
    const std::string meta = files->at("meta-data");
    CHECK_THAT(meta, Contains("instance-id: qshim-vm1-") && Contains("local-hostname: vm1"));
    // The same inputs give the same id; changed user-data or another VM name, another id.
    CHECK(seed_files(c, "vm1")->at("meta-data") == meta);
    CHECK(seed_files(c, "vm2")->at("meta-data") != meta);
    spec::CloudInit changed = c;
    changed.user_data.text += "# changed\n";
    CHECK(seed_files(changed, "vm1")->at("meta-data") != meta);
    // What the user sets stays theirs.
    c.meta_data = {"instance-id: mine\nlocal-hostname: other\n", "", true};
    c.network_config = {"version: 2\n", "", true};
    auto own = seed_files(c, "vm1");
    REQUIRE(own.ok());
    CHECK_THAT(own->at("meta-data"), Contains("instance-id: mine") &&
                                         Contains("local-hostname: other") &&
                                         !Contains("qshim-vm1"));
    CHECK(own->at("network-config") == "version: 2\n");
    // user-data always exists, empty when not given: NoCloud needs the file.
    auto none = seed_files(spec::CloudInit{}, "vm1");
    REQUIRE(none.ok());
    CHECK(none->at("user-data").empty());
}

TEST_CASE("seed image: an ISO 9660 volume 'cidata' holding the files, the same bytes each time") {
    std::map<std::string, std::string> files{{"user-data", "#cloud-config\nunique-marker-123\n"},
                                             {"meta-data", "instance-id: x\n"}};
    auto image = iso_image("cidata", files);
    REQUIRE(image.ok());
    REQUIRE(image->size() % 2048 == 0);
    REQUIRE(image->size() > 17 * 2048);
    // The primary volume descriptor at sector 16: type 1, "CD001", volume id at offset 40.
    const std::string& iso = *image;
    CHECK(iso[16 * 2048] == 1);
    CHECK(iso.substr(16 * 2048 + 1, 5) == "CD001");
    // ISO 9660 volume ids are upper case; Joliet's (type 2, UCS-2 big endian) keeps the case,
    // and is the label blkid (and so cloud-init) reads.
    CHECK(iso.substr(16 * 2048 + 40, 6) == "CIDATA");
    CHECK(iso[17 * 2048] == 2);
    CHECK(iso.substr(17 * 2048 + 40, 12) == std::string("\0c\0i\0d\0a\0t\0a", 12));
    CHECK(iso.find("unique-marker-123") != std::string::npos);
    // Rock Ridge keeps the real names (NM entries), lower case with a dash.
    CHECK(iso.find("user-data") != std::string::npos);
    CHECK(iso.find("meta-data") != std::string::npos);
    auto again = iso_image("cidata", files);
    REQUIRE(again.ok());
    CHECK(*again == *image);
    files["user-data"] += "x";
    CHECK(*iso_image("cidata", files) != *image);
}

TEST_CASE("config drive: OpenStack's layout under the label config-2") {
    spec::CloudInit c;
    c.datasource = spec::Datasource::config_drive;
    c.user_data = {"#cloud-config\nmarker: config-drive\n", "", true};
    c.meta_data = {"local-hostname: web\navailability_zone: az1\npublic_keys: {k: ssh-ed25519 A}\n",
                   "", true};
    c.network_config = {"links: [{id: eth0, type: phy}]\n", "", true};
    auto files = seed_files(c, "vm1");
    REQUIRE(files.ok());
    CHECK(files->size() == 3);
    CHECK(files->at("openstack/latest/user_data") == c.user_data.text);
    auto meta = nlohmann::json::parse(files->at("openstack/latest/meta_data.json"));
    CHECK(meta["hostname"] == "web");
    CHECK_THAT(meta["uuid"].get<std::string>(), Contains("qshim-vm1-"));  // the instance id
    CHECK(meta["availability_zone"] == "az1");
    CHECK(meta["public_keys"]["k"] == "ssh-ed25519 A");
    auto network = nlohmann::json::parse(files->at("openstack/latest/network_data.json"));
    CHECK(network["links"][0]["id"] == "eth0");
    CHECK(std::string(seed_label(c)) == "config-2");

    auto image = seed_image(c, "vm1");
    REQUIRE(image.ok());
    const std::string& iso = *image;
    // ISO 9660's own volume id has no '-' (d-characters); Joliet's keeps it, and is what blkid
    // reports as the label (as with KubeVirt's xorrisofs -volid config-2).
    CHECK(iso.substr(16 * 2048 + 40, 8) == "CONFIG_2");
    CHECK(iso.substr(17 * 2048 + 40, 16) == std::string("\0c\0o\0n\0f\0i\0g\0-\0"
                                                        "2",
                                                        16));
    // The folders and files by their Rock Ridge names.
    for (const char* name :
         {"openstack", "latest", "meta_data.json", "user_data", "network_data.json"})
        CHECK(iso.find(name) != std::string::npos);
    CHECK(iso.find("marker: config-drive") != std::string::npos);
    // A NoCloud seed of the same input is another image, labelled cidata.
    c.datasource = spec::Datasource::no_cloud;
    CHECK(std::string(seed_label(c)) == "cidata");
    CHECK(seed_image(c, "vm1")->substr(16 * 2048 + 40, 6) == "CIDATA");
}

TEST_CASE("prepare_state: the variable store is copied once and kept; run files go") {
    TempDir tmp;
    fs::create_directories(tmp.path / "ovmf");
    tmp.write("ovmf/OVMF_CODE_4M.fd", "code");
    tmp.write("ovmf/OVMF_VARS_4M.fd", "vars-template");
    std::string image = tmp.write("base.raw", std::string(1 << 20, '\0'));
    auto s = must_parse(fmt::format(R"(name: a
firmware: {{type: uefi}}
cloudInit: {{userData: "#cloud-config\n"}}
disks: [{{name: root, path: {}, format: raw, ephemeral: true}}]
)",
                                    image));
    StateInput in{(tmp.path / "state").string(), (tmp.path / "ovmf").string(), "qemu-img", me()};
    std::string vars = efi_vars_path(in.dir, false);
    {
        auto run = prepare_state(s, in);
        REQUIRE(run.ok());
        CHECK((fs::status(in.dir).permissions() & fs::perms::all) == fs::perms::owner_all);
        CHECK(read(vars) == "vars-template");
        CHECK(fs::exists(seed_path(in.dir)));
        std::string overlay = overlay_path(in.dir, "root");
        REQUIRE(fs::exists(overlay));
        std::string header = read(overlay).substr(0, 4);
        CHECK(header == "QFI\xfb");                  // qcow2
        CHECK_THAT(read(overlay), Contains(image));  // its backing file, by absolute path
        CHECK(run->paths().size() == 2);
        // The guest wrote to its variables: the next start keeps them.
        std::ofstream(vars, std::ios::binary) << "vars-the-guest-wrote";
        auto second = prepare_state(s, in);
        REQUIRE(second.ok());
        CHECK(read(vars) == "vars-the-guest-wrote");
    }  // both runs' files are removed with their RunFiles
    CHECK_FALSE(fs::exists(seed_path(in.dir)));
    CHECK_FALSE(fs::exists(overlay_path(in.dir, "root")));
    CHECK(fs::exists(vars));
}

TEST_CASE("preflight: a missing OVMF and an ephemeral disk's missing image, each at its place") {
    TempDir tmp;
    auto s = must_parse(fmt::format("name: a\n"
                                    "machine: {{accel: tcg}}\n"
                                    "firmware: {{type: uefi}}\n"
                                    "disks:\n"
                                    "  - name: root\n"
                                    "    path: {}/gone.qcow2\n"
                                    "    format: qcow2\n"
                                    "    ephemeral: true\n",
                                    tmp.path.string()),
                        "/specs/vm.yaml");
    PreflightInput input;
    input.qemu = me();
    input.firmware_dir = (tmp.path / "no-ovmf").string();
    std::vector<std::string> warnings;
    auto r = preflight(s, input, warnings);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::launch);
    CHECK_THAT(r.error().what(), StartsWith("checking what VM a needs: 2 problems:\n"));
    REQUIRE(r.error().diagnostics.size() == 2);
    // Nothing in the spec names the firmware file: the problem is the file's, without a place.
    CHECK(to_string(r.error().diagnostics[1]) ==
          "/specs/vm.yaml: firmware.type uefi: " + tmp.path.string() +
              "/no-ovmf/OVMF_CODE_4M.fd: No such file or directory (install Debian's ovmf)");
    // The image is where disks[0].path was written: line 6, column 11.
    CHECK(to_string(r.error().diagnostics[0]) ==
          "/specs/vm.yaml:6:11: disks[0] (root): " + tmp.path.string() +
              "/gone.qcow2: No such file or directory");

    // A spec not read from a file has no places: the error alone says it.
    s.source_file.clear();
    r = preflight(s, input, warnings);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().diagnostics.empty());
    CHECK_THAT(r.error().what(),
               Contains("2 problems:") && Contains("gone.qcow2: No such file or directory"));
}

TEST_CASE("prepare_state: a missing source makes nothing and says what to install") {
    TempDir tmp;
    auto uefi = must_parse("name: a\nfirmware: {type: uefi}\n");
    StateInput in{(tmp.path / "state").string(), (tmp.path / "no-ovmf").string(), "qemu-img", me()};
    auto r = prepare_state(uefi, in);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::launch);
    CHECK_THAT(r.error().message, Contains("OVMF_CODE_4M.fd") && Contains("install Debian's ovmf"));
    CHECK_FALSE(fs::exists(in.dir));

    auto eph = must_parse(fmt::format(
        "name: a\ncloudInit: {{}}\ndisks: [{{name: root, path: {}/gone.qcow2, format: qcow2, "
        "ephemeral: true}}]\n",
        tmp.path.string()));
    r = prepare_state(eph, in);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("disks[0] (root)") && Contains("no such file"));
    CHECK_FALSE(fs::exists(in.dir));

    // qemu-img itself failing (an image of another format) leaves no seed behind.
    std::string not_qcow2 = tmp.write("plain.qcow2", "not a qcow2 image");
    auto wrong = must_parse(
        fmt::format("name: a\ncloudInit: {{}}\ndisks: [{{name: root, path: {}, format: qcow2, "
                    "ephemeral: true}}]\n",
                    not_qcow2));
    r = prepare_state(wrong, in);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("creating its overlay") && Contains("qemu-img"));
    CHECK_FALSE(fs::exists(seed_path(in.dir)));
    CHECK_FALSE(fs::exists(overlay_path(in.dir, "root")));

    in.qemu_img = "/nonexistent/qemu-img";
    std::string raw = tmp.write("ok.raw", "x");
    auto no_tool = must_parse(fmt::format(
        "name: a\ndisks: [{{name: root, path: {}, format: raw, ephemeral: true}}]\n", raw));
    r = prepare_state(no_tool, in);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Contains("install Debian's qemu-utils"));
}

TEST_CASE("command line: UEFI firmware as pflash block nodes") {
    auto s = must_parse("name: a\nfirmware: {type: uefi}\n");
    launcher::CommandOptions o;
    o.state_dir = "/state";
    auto argv = argv_for(s, o);
    CHECK_THAT(value_of(argv, "-machine"),
               Contains(",pflash0=fw.code,pflash1=fw.vars") && !Contains("smm=on"));
    auto nodes = json_args(argv, "-blockdev");
    REQUIRE(node(nodes, "fw.code.file"));
    CHECK((*node(nodes, "fw.code.file"))["filename"] == "/usr/share/OVMF/OVMF_CODE_4M.fd");
    CHECK((*node(nodes, "fw.code.file"))["read-only"] == true);
    CHECK((*node(nodes, "fw.code"))["read-only"] == true);
    CHECK((*node(nodes, "fw.vars.file"))["filename"] == "/state/efi-vars.fd");
    CHECK((*node(nodes, "fw.vars"))["read-only"] == false);
    CHECK(value_of(argv, "-global").empty());

    auto secure = argv_for(must_parse("name: a\nfirmware: {type: uefi, secureBoot: true}\n"), o);
    CHECK_THAT(value_of(secure, "-machine"), Contains("smm=on"));
    CHECK(value_of(secure, "-global") == "driver=cfi.pflash01,property=secure,value=on");
    auto snodes = json_args(secure, "-blockdev");
    CHECK((*node(snodes, "fw.code.file"))["filename"] == "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd");
    CHECK((*node(snodes, "fw.vars.file"))["filename"] == "/state/efi-vars-secboot.fd");

    auto bios = argv_for(must_parse("name: a\n"), o);
    CHECK_THAT(value_of(bios, "-machine"), !Contains("pflash"));
}

TEST_CASE("command line: the SMBIOS uuid and serial, only when the spec sets them") {
    auto argv = argv_for(must_parse(
        "name: a\nfirmware: {uuid: 5d307ca9-b3ef-428c-8861-06e72d69f223, serial: SN-1}\n"));
    CHECK(value_of(argv, "-uuid") == "5d307ca9-b3ef-428c-8861-06e72d69f223");
    CHECK(value_of(argv, "-smbios") == "type=1,serial=SN-1");
    auto plain = argv_for(must_parse("name: a\n"));
    CHECK(std::find(plain.begin(), plain.end(), "-uuid") == plain.end());
    CHECK(std::find(plain.begin(), plain.end(), "-smbios") == plain.end());
    // Guest ABI: a target with another uuid is another guest.
    auto with = must_parse("name: a\nfirmware: {uuid: 5d307ca9-b3ef-428c-8861-06e72d69f223}\n");
    auto without = must_parse("name: a\n");
    auto fp = [](const spec::VmSpec& s) { return topology::fingerprint(s, *topology::plan(s)); };
    CHECK(fp(with).digest != fp(without).digest);
}

TEST_CASE("command line: the seed, overlays and forwards; the state directory's default") {
    auto s = must_parse(R"(name: a
cloudInit: {}
disks: [{name: root, path: /img/base.qcow2, format: qcow2, ephemeral: true}]
interfaces:
  - {name: n, backend: {type: user, restrict: true, portForwards: [{hostPort: 2222, guestPort: 22}]}}
)",
                        "/specs/a.yaml");
    CHECK(launcher::default_state_dir(s) == "/specs/.qshim/a");
    CHECK(launcher::needs_state_dir(s));
    CHECK_FALSE(launcher::needs_state_dir(must_parse("name: b\n")));
    auto argv = argv_for(s);
    auto nodes = json_args(argv, "-blockdev");
    REQUIRE(node(nodes, "seed.file"));
    CHECK((*node(nodes, "seed.file"))["filename"] == "/specs/.qshim/a/cidata.iso");
    CHECK((*node(nodes, "seed"))["read-only"] == true);
    // Image read-only under an overlay in the state directory, backing format explicit.
    const auto* image = node(nodes, launcher::image_node_name("root"));
    REQUIRE(image);
    CHECK((*image)["driver"] == "qcow2");
    CHECK((*image)["read-only"] == true);
    CHECK((*node(nodes, launcher::file_node_name("root")))["read-only"] == true);
    const auto* overlay_file = node(nodes, launcher::overlay_node_name("root"));
    REQUIRE(overlay_file);
    CHECK((*overlay_file)["filename"] == "/specs/.qshim/a/root.overlay.qcow2");
    const auto* top = node(nodes, launcher::format_node_name("root"));
    REQUIRE(top);
    CHECK((*top)["driver"] == "qcow2");
    CHECK((*top)["backing"] == launcher::image_node_name("root"));
    CHECK((*top)["read-only"] == false);
    // The seed's device: virtio-blk, serial cidata, at its fixed place.
    auto devices = json_args(argv, "-device");
    auto seed = std::find_if(devices.begin(), devices.end(),
                             [](const auto& d) { return d.value("id", "") == "cloudinit.0"; });
    REQUIRE(seed != devices.end());
    CHECK((*seed)["driver"] == "virtio-blk-pci");
    CHECK((*seed)["drive"] == "seed");
    CHECK((*seed)["serial"] == "cidata");
    CHECK((*seed)["bus"] == "rp.controllers.4");
    auto netdevs = json_args(argv, "-netdev");
    REQUIRE(netdevs.size() == 1);
    CHECK(netdevs[0]["hostfwd"] == nlohmann::json::parse(R"([{"str": "tcp:127.0.0.1:2222-:22"}])"));
    CHECK(netdevs[0]["restrict"] == true);
}

TEST_CASE("the seed's place in topology v1 moves nothing that was there") {
    auto without = must_parse(
        "name: a\ndevices: {balloon: true, guestAgent: /run/qga.sock}\n"
        "disks: [{name: d, path: /i, format: raw, bus: scsi}]\n");
    auto with = without;
    with.cloud_init = spec::CloudInit{};
    auto a = topology::plan(without), b = topology::plan(with);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    for (const auto& d : a->devices) {
        const auto* same = b->find_device(d.name, d.kind);
        REQUIRE(same);
        CHECK(same->address == d.address);
    }
    const auto* seed = b->find_device("cloud-init", topology::DeviceKind::system);
    REQUIRE(seed);
    CHECK(spec::to_string(seed->address) == "0000:65:00.0");
    CHECK(seed->serial == "cidata");
    CHECK(b->devices.size() == a->devices.size() + 1);
}

TEST_CASE("command line: the console on a socket qshim holds, which logs it itself") {
    launcher::CommandOptions o;
    o.qmp_fd = 40;
    o.serial_fd = 41;
    auto s = must_parse("name: a\nserial: {log: /logs/a.log}\n");
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto command = launcher::build_command(s, *t, o);
    REQUIRE(command.ok());
    // Inherited in the order argv names them: QMP's fd 3, the console's 4.
    CHECK(value_of(command->argv, "-chardev") == "socket,id=qmp,fd=3");
    auto argv = command->argv;
    // QEMU's log of a socket repeats bytes the socket refused once (QEMU-NOTES): not used.
    auto console = std::find(argv.begin(), argv.end(), "socket,id=serial0,fd=4");
    CHECK(console != argv.end());
    for (const auto& a : argv) CHECK(a.find("logfile") == std::string::npos);
    REQUIRE(command->fds.size() == 2);
    CHECK(command->fds[1].source == 41);
    CHECK(command->fds[1].target == 4);
    // The console has one owner: not qshim and stdout, not qshim and serial.socket.
    o.serial_stdio = true;
    CHECK(launcher::build_command(s, *t, o).error().code == Errc::invalid_spec);
    o.serial_stdio = false;
    auto sock = must_parse("name: a\nserial: {socket: /run/a.sock}\n");
    auto st = topology::plan(sock);
    REQUIRE(st.ok());
    CHECK_THAT(launcher::build_command(sock, *st, o).error().message,
               Contains("cannot go to qshim and to stdout or serial.socket"));
}

TEST_CASE("run files: only the file this run made is removed") {
    TempDir tmp;
    std::string seed = tmp.write("cidata.iso", "ours");
    RunFiles run;
    run.add(seed);
    run.add((tmp.path / "never-made").string());  // nothing there: nothing recorded
    CHECK(run.paths() == std::vector<std::string>{seed});
    // Another run of the spec (a migration target here) replaced it, as qshim writes files:
    // a new file renamed over the old one, which its QEMU still holds open. It stays.
    std::ifstream held(seed);
    fs::rename(tmp.write("cidata.iso.tmp", "theirs"), seed);
    run.remove();
    CHECK(read(seed) == "theirs");
    RunFiles mine;
    mine.add(seed);
    mine.remove();
    CHECK_FALSE(fs::exists(seed));
}

TEST_CASE("prepare_state: a blank disk is an empty qcow2 of its capacity, gone after the run") {
    TempDir tmp;
    auto s = must_parse("name: a\ndisks: [{name: scratch, capacity: 64Mi}]\n");
    CHECK(launcher::needs_state_dir(s));
    StateInput in{(tmp.path / "state").string(), (tmp.path / "ovmf").string(), "qemu-img", me()};
    const std::string blank = blank_path(in.dir, "scratch");
    {
        auto run = prepare_state(s, in);
        REQUIRE(run.ok());
        REQUIRE(fs::exists(blank));
        std::string header = read(blank);
        REQUIRE(header.size() > 32);
        CHECK(header.substr(0, 4) == "QFI\xfb");
        // The virtual size, big-endian at offset 24 of the qcow2 header.
        uint64_t size = 0;
        for (int i = 24; i < 32; ++i) size = size << 8 | static_cast<unsigned char>(header[i]);
        CHECK(size == 64ull << 20);
        // The command line opens it, as qcow2, from the state directory.
        launcher::CommandOptions o;
        o.state_dir = in.dir;
        auto nodes = json_args(argv_for(s, o), "-blockdev");
        const auto* file = node(nodes, launcher::file_node_name("scratch"));
        REQUIRE(file);
        CHECK((*file)["filename"] == blank);
        CHECK((*node(nodes, launcher::format_node_name("scratch")))["driver"] == "qcow2");
    }
    CHECK_FALSE(fs::exists(blank));
}

TEST_CASE("folder files: every regular file by its path, without a mount's ..data versions") {
    TempDir tmp;
    // A configMap as Kubernetes mounts it: each key a link into ..data, the current version.
    const fs::path cm = tmp.path / "app-config";
    const fs::path version = cm / "..2026_12_01_10_00_00.000000001";
    fs::create_directories(version / "nested");
    std::ofstream(version / "app.conf") << "color=blue\n";
    std::ofstream(version / "nested" / "deep") << "deep\n";
    fs::create_directory_symlink(version.filename(), cm / "..data");
    fs::create_symlink("..data/app.conf", cm / "app.conf");
    fs::create_directory(cm / "plain");
    std::ofstream(cm / "plain" / "file") << "plain\n";
    auto files = folder_files(cm.string());
    REQUIRE(files.ok());
    CHECK(*files == std::map<std::string, std::string>{{"app.conf", "color=blue\n"},
                                                       {"plain/file", "plain\n"}});
    // An empty folder is an empty image; a missing one is an error that names it.
    fs::create_directory(tmp.path / "empty");
    CHECK(folder_files((tmp.path / "empty").string())->empty());
    auto missing = folder_files((tmp.path / "nope").string());
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.error().what(),
               Contains((tmp.path / "nope").string()) && Contains("reading the folder disk"));
}

TEST_CASE("prepare_state: a folder disk is an ISO of its files, labelled, gone after the run") {
    TempDir tmp;
    fs::create_directory(tmp.path / "cfg");
    std::ofstream(tmp.path / "cfg" / "motd") << "folder-marker-77\n";
    auto s =
        must_parse(fmt::format("name: a\ndisks: [{{name: cfg, folder: {}, volumeLabel: "
                               "appdata}}, {{name: plain, folder: {}}}]\n",
                               (tmp.path / "cfg").string(), (tmp.path / "cfg").string()));
    CHECK(launcher::needs_state_dir(s));
    StateInput in{(tmp.path / "state").string(), (tmp.path / "ovmf").string(), "qemu-img", me()};
    const std::string iso = folder_image_path(in.dir, "cfg");
    const std::string plain = folder_image_path(in.dir, "plain");
    {
        auto run = prepare_state(s, in);
        REQUIRE(run.ok());
        REQUIRE(fs::exists(iso));
        // A secret's files may be in it.
        CHECK((fs::status(iso).permissions() & fs::perms::all) ==
              (fs::perms::owner_read | fs::perms::owner_write));
        const std::string image = read(iso);
        REQUIRE(image.size() > 18 * 2048);
        CHECK(image.find("folder-marker-77") != std::string::npos);
        // Joliet's volume id, the label the guest sees; KubeVirt's default without one.
        CHECK(image.substr(17 * 2048 + 40, 14) == std::string("\0a\0p\0p\0d\0a\0t\0a", 14));
        CHECK(read(plain).substr(17 * 2048 + 40, 14) == std::string("\0c\0f\0g\0d\0a\0t\0a", 14));
        // The command line opens it read-only, raw, from the state directory.
        launcher::CommandOptions o;
        o.state_dir = in.dir;
        auto nodes = json_args(argv_for(s, o), "-blockdev");
        const auto* file = node(nodes, launcher::file_node_name("cfg"));
        REQUIRE(file);
        CHECK((*file)["filename"] == iso);
        const auto* format = node(nodes, launcher::format_node_name("cfg"));
        REQUIRE(format);
        CHECK((*format)["driver"] == "raw");
        CHECK((*format)["read-only"] == true);
    }
    CHECK_FALSE(fs::exists(iso));
    CHECK_FALSE(fs::exists(plain));
}

TEST_CASE("preflight: a folder disk's folder must be there, at its line") {
    TempDir tmp;
    const std::string file = tmp.write("file", "x");
    PreflightInput input;
    input.qemu = me();
    std::vector<std::string> warnings;
    auto spec_for = [](const std::string& folder) {
        return must_parse(fmt::format("name: a\nmachine: {{accel: tcg}}\ndisks:\n"
                                      "  - name: cfg\n    folder: {}\n",
                                      folder),
                          "/specs/vm.yaml");
    };
    CHECK(preflight(spec_for(tmp.path.string()), input, warnings).ok());
    for (auto [folder, reason] : {std::pair{(tmp.path / "nope").string(), "no such folder"},
                                  std::pair{file, "not a folder"}}) {
        auto r = preflight(spec_for(folder), input, warnings);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().diagnostics.size() == 1);
        CHECK(to_string(r.error().diagnostics[0]) ==
              fmt::format("/specs/vm.yaml:5:13: disks[0] (cfg).folder: {}: {}", folder, reason));
    }
}

TEST_CASE("ephemeral disks do not migrate") {
    CHECK(unmigratable_disks(must_parse("name: a\ndisks: [{name: d, path: /i, format: raw}]\n"))
              .empty());
    CHECK_THAT(unmigratable_disks(must_parse(
                   "name: a\ndisks: [{name: d, path: /i, format: raw}, {name: e, path: /j, "
                   "format: qcow2, ephemeral: true}]\n")),
               Contains("disks[1] (e) is ephemeral") && Contains("cannot be live-migrated"));
    CHECK_THAT(unmigratable_disks(must_parse("name: a\ndisks: [{name: s, capacity: 1Gi}]\n")),
               Contains("disks[0] (s) is blank"));
}

TEST_CASE("preflight: cache none where the file system refuses O_DIRECT, at the image's line") {
    // tmpfs refuses O_DIRECT before Linux 6.6 (Debian 12's kernel) and takes it since: whichever
    // this kernel does, preflight must say the same, and nothing for an image on ext4.
    const fs::path shm = fs::path("/dev/shm") / fmt::format("qshim-direct-{}.raw", getpid());
    std::ofstream(shm, std::ios::binary) << std::string(4096, '\0');
    struct Remove {
        fs::path p;
        ~Remove() { fs::remove(p); }
    } remove_shm{shm};
    int fd = open(shm.c_str(), O_RDONLY | O_DIRECT);
    const bool tmpfs_refuses = fd < 0 && errno == EINVAL;
    if (fd >= 0) close(fd);
    TempDir tmp;
    const std::string disk = tmp.write("disk.raw", std::string(4096, '\0'));
    PreflightInput input;
    input.qemu = me();
    std::vector<std::string> warnings;
    auto spec_for = [](const std::string& path, const char* cache) {
        return must_parse(fmt::format("name: a\nmachine: {{accel: tcg}}\ndisks:\n"
                                      "  - name: root\n    path: {}\n    format: raw\n"
                                      "    cache: {}\n",
                                      path, cache),
                          "/specs/vm.yaml");
    };
    auto r = preflight(spec_for(shm.string(), "none"), input, warnings);
    if (tmpfs_refuses) {
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().diagnostics.size() == 1);
        CHECK(to_string(r.error().diagnostics[0]) ==
              "/specs/vm.yaml:5:11: disks[0] (root).cache none: " + shm.string() +
                  ": its file system does not take O_DIRECT (tmpfs before Linux 6.6 does not): "
                  "use cache writethrough");
    } else {
        CHECK(r.ok());
    }
    CHECK(preflight(spec_for(shm.string(), "writethrough"), input, warnings).ok());
    CHECK(preflight(spec_for(disk, "none"), input, warnings).ok());
}
