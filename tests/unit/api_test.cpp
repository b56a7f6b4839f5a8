// The control API's pure parts: routing, error bodies and statuses, parameters, peer check,
// socket file handling and the bounded event queue.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "api/event_queue.hpp"
#include "api/json.hpp"
#include "api/params.hpp"
#include "api/routes.hpp"
#include "api/socket.hpp"

using namespace qshim;
using namespace qshim::api;
using Outcome = Route::Outcome;

TEST_CASE("every endpoint routes with its method") {
    struct Case {
        const char* method;
        const char* target;
        Endpoint endpoint;
    };
    const Case cases[] = {
        {"GET", "/v1/vm", Endpoint::vm},
        {"GET", "/v1/vm/topology", Endpoint::topology},
        {"POST", "/v1/vm/disks", Endpoint::disks},
        {"DELETE", "/v1/vm/disks/data", Endpoint::disk},
        {"POST", "/v1/vm/disks/cd/media", Endpoint::media},
        {"POST", "/v1/vm/interfaces", Endpoint::interfaces},
        {"DELETE", "/v1/vm/interfaces/net1", Endpoint::interface},
        {"POST", "/v1/vm/pause", Endpoint::pause},
        {"POST", "/v1/vm/resume", Endpoint::resume},
        {"POST", "/v1/vm/shutdown", Endpoint::shutdown},
        {"POST", "/v1/vm/migrate", Endpoint::migrate},
        {"GET", "/v1/vm/migration", Endpoint::migration},
        {"DELETE", "/v1/vm/migration", Endpoint::cancel_migration},
        {"GET", "/v1/vm/console", Endpoint::console},
        {"GET", "/v1/events", Endpoint::events},
    };
    for (const auto& c : cases) {
        INFO(c.method << " " << c.target);
        Route r = route(c.method, c.target);
        CHECK(r.outcome == Outcome::ok);
        CHECK(r.endpoint == c.endpoint);
    }
    CHECK(route("DELETE", "/v1/vm/disks/data").name == "data");
    CHECK(route("POST", "/v1/vm/disks/cd/media").name == "cd");  // the name mid-path
    CHECK(route("GET", "/v1/vm/disks/cd/media").outcome == Outcome::method_not_allowed);
    CHECK(route("POST", "/v1/vm/disks/cd/tray").outcome == Outcome::not_found);
}

TEST_CASE("one trailing slash is ignored, empty segments match nothing") {
    CHECK(route("GET", "/v1/vm/").outcome == Outcome::ok);
    CHECK(route("GET", "/v1/vm/topology/").endpoint == Endpoint::topology);
    Route named = route("DELETE", "/v1/vm/disks/data/");
    CHECK(named.outcome == Outcome::ok);
    CHECK(named.name == "data");
    CHECK(route("GET", "/v1//vm").outcome == Outcome::not_found);
    CHECK(route("GET", "/v1/vm//").outcome == Outcome::not_found);
    CHECK(route("GET", "//").outcome == Outcome::not_found);
    // Without a name, the DELETE lands on the collection, which only takes POST.
    Route bare = route("DELETE", "/v1/vm/disks/");
    CHECK(bare.outcome == Outcome::method_not_allowed);
    CHECK(bare.allow == "POST");
}

TEST_CASE("names are percent-decoded after the path is split") {
    Route r = route("DELETE", "/v1/vm/disks/a%2Fb%20c+d%25");
    REQUIRE(r.outcome == Outcome::ok);
    CHECK(r.endpoint == Endpoint::disk);
    CHECK(r.name == "a/b c+d%");  // "+" is a space only in a query
    CHECK(route("DELETE", "/v1/vm/interfaces/%C3%A9th0").name == "\xC3\xA9th0");
    // Literal segments may be encoded too (unreserved characters are equivalent).
    CHECK(route("GET", "/v1/%76m").endpoint == Endpoint::vm);
    CHECK(route("DELETE", "/v1/vm/disks/%zz").outcome == Outcome::bad_request);
    CHECK(route("DELETE", "/v1/vm/disks/ab%2").outcome == Outcome::bad_request);
    CHECK(route("DELETE", "/v1/vm/disks/ab%").outcome == Outcome::bad_request);
    CHECK(route("DELETE", "/v1/vm/disks/a%00b").outcome == Outcome::bad_request);
}

TEST_CASE("unknown paths are 404, known paths with a wrong method 405 with Allow") {
    CHECK(route("GET", "/").outcome == Outcome::not_found);
    CHECK(route("GET", "/v1").outcome == Outcome::not_found);
    CHECK(route("GET", "/v2/vm").outcome == Outcome::not_found);
    CHECK(route("GET", "/v1/vm/disks/a/b").outcome == Outcome::not_found);
    CHECK(route("GET", "/v1/VM").outcome == Outcome::not_found);  // paths are case-sensitive
    Route r = route("POST", "/v1/vm");
    CHECK(r.outcome == Outcome::method_not_allowed);
    CHECK(r.allow == "GET");
    CHECK(route("HEAD", "/v1/vm").allow == "GET");
    CHECK(route("GET", "/v1/vm/disks/x").allow == "DELETE");
    CHECK(route("get", "/v1/vm").outcome == Outcome::method_not_allowed);  // methods are too
}

TEST_CASE("the query is parsed and checked against what the endpoint takes") {
    Route r = route("DELETE", "/v1/vm/disks/data?timeoutSeconds=5");
    REQUIRE(r.outcome == Outcome::ok);
    CHECK(r.name == "data");
    CHECK(r.query.at("timeoutSeconds") == "5");
    CHECK(route("DELETE", "/v1/vm/disks/data/?timeoutSeconds=5").query.at("timeoutSeconds") == "5");
    CHECK(route("GET", "/v1/vm?").outcome == Outcome::ok);

    Route unknown = route("DELETE", "/v1/vm/disks/data?timeout=5");
    CHECK(unknown.outcome == Outcome::bad_request);
    CHECK(unknown.bad_field == "timeout");
    CHECK(route("GET", "/v1/vm?verbose=1").bad_field == "verbose");
    CHECK(route("DELETE", "/v1/vm/disks/d?timeoutSeconds=1&timeoutSeconds=2").outcome ==
          Outcome::bad_request);
    CHECK(route("DELETE", "/v1/vm/disks/d?timeoutSeconds=%G1").outcome == Outcome::bad_request);
    // Routing comes first: an unknown path with a bad query is still a 404.
    CHECK(route("GET", "/nope?%%").outcome == Outcome::not_found);
}

TEST_CASE("query strings decode keys and values, + as space") {
    auto q = parse_query("a=1&b=x%20y+z&&c&d=");
    REQUIRE(q);
    CHECK(q->at("a") == "1");
    CHECK(q->at("b") == "x y z");
    CHECK(q->at("c").empty());
    CHECK(q->at("d").empty());
    CHECK(q->size() == 4);
    CHECK(parse_query("")->empty());
    CHECK_FALSE(parse_query("=1"));
    CHECK_FALSE(parse_query("a=1&a=2"));
    CHECK(percent_decode("a+b", false) == "a+b");
    CHECK(percent_decode("%41%62", false) == "Ab");
}

TEST_CASE("absolute-form targets and odd targets") {
    CHECK(route("GET", "http://localhost/v1/vm").endpoint == Endpoint::vm);
    CHECK(route("DELETE", "http://localhost/v1/vm/disks/x?timeoutSeconds=1").name == "x");
    CHECK(route("GET", "http://localhost").outcome == Outcome::not_found);
    CHECK(route("GET", "*").outcome == Outcome::bad_request);
    CHECK(route("GET", "").outcome == Outcome::bad_request);
    CHECK(route("GET", "/v1/vm#frag").outcome == Outcome::ok);
}

TEST_CASE("each error class maps to its documented status and name") {
    auto status = [](Errc code, std::string qmp_class = {}) {
        Error e = make_error(code, "x");
        e.qmp_class = std::move(qmp_class);
        return http_status(e);
    };
    CHECK(status(Errc::invalid_spec) == 400);
    CHECK(status(Errc::invalid_spec, "GenericError") == 400);  // QEMU refused the image
    CHECK(status(Errc::not_found) == 404);
    CHECK(status(Errc::conflict) == 409);
    CHECK(status(Errc::topology) == 409);
    CHECK(status(Errc::state) == 503);
    // No answer from QEMU is never the client's fault.
    CHECK(status(Errc::timeout) == 504);
    CHECK(status(Errc::interrupted) == 503);
    CHECK(status(Errc::protocol) == 503);
    CHECK(status(Errc::unsupported) == 501);
    CHECK(status(Errc::qmp, "GenericError") == 500);
    CHECK(status(Errc::qmp, "DeviceNotFound") == 404);
    CHECK(status(Errc::qmp, "CommandNotFound") == 501);
    for (Errc c : {Errc::io, Errc::launch, Errc::internal}) CHECK(status(c) == 500);
    CHECK(std::string(errc_name(Errc::invalid_spec)) == "invalid_spec");
    CHECK(std::string(errc_name(Errc::not_found)) == "not_found");
    CHECK(std::string(errc_name(Errc::qmp)) == "qmp");
}

TEST_CASE("an error body carries code, message, QMP class and field diagnostics") {
    Error e = make_error(Errc::invalid_spec, "the disk is invalid", "reading the request body");
    e.diagnostics.push_back(
        Diagnostic{"request body", 1, 25, "format", "must be one of raw, qcow2"});
    Json body = error_body(e);
    REQUIRE(body.size() == 1);
    const Json& err = body.at("error");
    CHECK(err.at("code") == "invalid_spec");
    CHECK(err.at("message") == "reading the request body: the disk is invalid");
    CHECK_FALSE(err.contains("qmpClass"));
    REQUIRE(err.at("fields").size() == 1);
    CHECK(err.at("fields")[0] ==
          Json::parse(
              R"({"path":"format","line":1,"column":25,"reason":"must be one of raw, qcow2"})"));
    // Keys keep their documented order.
    CHECK(
        body.dump() ==
        R"({"error":{"code":"invalid_spec","message":"reading the request body: the disk is invalid","fields":[{"path":"format","line":1,"column":25,"reason":"must be one of raw, qcow2"}]}})");

    Error q = make_error(Errc::qmp, "Duplicate ID 'data' for device", "device_add");
    q.qmp_class = "GenericError";
    Json qb = error_body(q);
    CHECK(qb["error"]["qmpClass"] == "GenericError");
    CHECK_FALSE(qb["error"].contains("fields"));

    Response r = error_response(q);
    CHECK(r.status == 500);
    CHECK(r.body.back() == '\n');
    CHECK(Json::parse(r.body) == qb);
}

TEST_CASE("route errors become 404, 405 with Allow, and 400") {
    Response nf = route_error(route("GET", "/v1/nope"));
    CHECK(nf.status == 404);
    CHECK(Json::parse(nf.body)["error"]["code"] == "not_found");
    Response na = route_error(route("PUT", "/v1/vm/pause"));
    CHECK(na.status == 405);
    CHECK(na.allow == "POST");
    CHECK(Json::parse(na.body)["error"]["code"] == "method_not_allowed");
    // A path that cannot be decoded is malformed whatever the method.
    CHECK(route_error(route("GET", "/v1/vm/disks/%zz")).status == 400);
    Response bad2 = route_error(route("DELETE", "/v1/vm/disks/%zz"));
    CHECK(bad2.status == 400);
    CHECK(Json::parse(bad2.body)["error"]["code"] == "bad_request");
    Response field = route_error(route("GET", "/v1/vm?x=1"));
    CHECK(field.status == 400);
    Json fb = Json::parse(field.body);
    CHECK(fb["error"]["code"] == "invalid_spec");
    CHECK(fb["error"]["fields"][0]["path"] == "x");
}

TEST_CASE("timeoutSeconds in a DELETE query") {
    auto timeout_of = [](const std::string& target) {
        return timeout_param(route("DELETE", target));
    };
    CHECK(timeout_of("/v1/vm/disks/d").value == std::chrono::seconds(30));
    CHECK(timeout_of("/v1/vm/disks/d?timeoutSeconds=0").value == std::chrono::seconds(0));
    CHECK(timeout_of("/v1/vm/disks/d?timeoutSeconds=3600").value == std::chrono::seconds(3600));
    for (const char* bad : {"", "-1", "3601", "1.5", "abc", "5s", "99999999999999999999"}) {
        INFO(bad);
        Timeout t = timeout_of(std::string("/v1/vm/disks/d?timeoutSeconds=") + bad);
        REQUIRE(t.error);
        CHECK(t.error->status == 400);
        CHECK(Json::parse(t.error->body)["error"]["fields"][0]["path"] == "timeoutSeconds");
    }
}

TEST_CASE("the shutdown body is empty or {timeoutSeconds}") {
    CHECK_FALSE(shutdown_body("").value);
    CHECK_FALSE(shutdown_body(" \n").error);
    CHECK(shutdown_body("{}").value == std::nullopt);
    CHECK(shutdown_body(R"({"timeoutSeconds": 10})").value == std::chrono::seconds(10));
    for (const char* bad : {"{", "[]", "10", R"({"timeout": 1})", R"({"timeoutSeconds": -1})",
                            R"({"timeoutSeconds": 1.5})", R"({"timeoutSeconds": "1"})",
                            R"({"timeoutSeconds": 3601})"}) {
        INFO(bad);
        Grace g = shutdown_body(bad);
        REQUIRE(g.error);
        CHECK(g.error->status == 400);
        CHECK(Json::parse(g.error->body)["error"]["code"] == "invalid_spec");
    }
}

TEST_CASE("the migrate body: every field, checked") {
    Migration m = migrate_body(R"({"uri": "tcp:10.0.0.2:4444", "downtimeLimitMs": 500,
        "maxBandwidthMiBps": 1000, "multifdChannels": 1, "autoConverge": true, "postcopy": true,
        "completionTimeoutSeconds": 600, "progressTimeoutSeconds": 30, "tlsDir": "/etc/tls",
        "tlsHostname": "node2"})");
    REQUIRE_FALSE(m.error);
    const MigrationRequest& r = m.value;
    CHECK(r.uri == "tcp:10.0.0.2:4444");
    CHECK(r.downtime_limit == std::chrono::milliseconds(500));
    CHECK(r.max_bandwidth_mibps == 1000);
    CHECK(r.multifd_channels == 1);
    CHECK((r.auto_converge && r.postcopy));
    CHECK(r.completion_timeout == std::chrono::seconds(600));
    CHECK(r.progress_timeout == std::chrono::seconds(30));
    CHECK((r.tls_dir == "/etc/tls" && r.tls_hostname == "node2"));
    // Defaults.
    Migration d = migrate_body(R"({"uri": "unix:/run/m.sock"})");
    REQUIRE_FALSE(d.error);
    CHECK(d.value.downtime_limit == std::chrono::milliseconds(300));
    CHECK((!d.value.auto_converge && !d.value.postcopy && d.value.tls_dir.empty()));
}

TEST_CASE("a bad migrate body is a 400 naming the field") {
    for (auto [body, field] : std::vector<std::pair<std::string, std::string>>{
             {"{}", "uri"},
             {R"({"uri": 5})", "uri"},
             {R"({"uri": "unix:/a", "downtimeLimitMs": 0})", "downtimeLimitMs"},
             {R"({"uri": "unix:/a", "downtimeLimitMs": -1})", "downtimeLimitMs"},
             {R"({"uri": "unix:/a", "autoConverge": "yes"})", "autoConverge"},
             {R"({"uri": "unix:/a", "progressTimeoutSeconds": 0})", "progressTimeoutSeconds"},
             {R"({"uri": "unix:/a", "tlsDir": ""})", "tlsDir"},
             {R"({"uri": "unix:/a", "speed": 1})", "speed"},
         }) {
        INFO(body);
        Migration m = migrate_body(body);
        REQUIRE(m.error);
        CHECK(m.error->status == 400);
        CHECK(m.error->body.find("\"" + field + "\"") != std::string::npos);
    }
    REQUIRE(migrate_body("not json").error);
    REQUIRE(migrate_body("[1]").error);
}

TEST_CASE("the media body inserts a disc or ejects it") {
    Media insert = media_body(R"({"path": "/images/a.iso", "format": "raw"})");
    REQUIRE_FALSE(insert.error);
    CHECK(insert.value.path == "/images/a.iso");
    CHECK(insert.value.format == spec::DiskFormat::raw);
    CHECK_FALSE(insert.value.force);
    Media forced = media_body(R"({"path": "b.qcow2", "format": "qcow2", "force": true})");
    REQUIRE_FALSE(forced.error);
    CHECK((forced.value.format == spec::DiskFormat::qcow2 && forced.value.force));
    Media eject = media_body(R"({"eject": true})");
    REQUIRE_FALSE(eject.error);
    CHECK(eject.value.path.empty());
    for (auto [body, field] : std::vector<std::pair<std::string, std::string>>{
             {"{}", "path"},
             {R"({"eject": false})", "path"},
             {R"({"path": "/a.iso"})", "format"},
             {R"({"path": "/a.iso", "format": "vmdk"})", "format"},
             {R"({"path": "", "format": "raw"})", "path"},
             {R"({"path": "/a\u0000b", "format": "raw"})", "path"},
             {R"({"path": 5, "format": "raw"})", "path"},
             {R"({"eject": true, "path": "/a.iso"})", "eject"},
             {R"({"eject": "yes"})", "eject"},
             {R"({"eject": true, "force": 1})", "force"},
             {R"({"eject": true, "tray": "open"})", "tray"},
         }) {
        INFO(body);
        Media m = media_body(body);
        REQUIRE(m.error);
        CHECK(m.error->status == 400);
        CHECK(Json::parse(m.error->body)["error"]["fields"][0]["path"] == field);
    }
    REQUIRE(media_body("not json").error);
    REQUIRE(media_body("[]").error);
}

TEST_CASE("peers: the same uid or root") {
    CHECK(peer_allowed(1000, 1000));
    CHECK(peer_allowed(0, 1000));
    CHECK(peer_allowed(0, 0));
    CHECK_FALSE(peer_allowed(1001, 1000));
    CHECK_FALSE(peer_allowed(1000, 0));  // a root server does not serve everyone
    CHECK_FALSE(peer_allowed(65534, 1000));

    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    auto uid = peer_uid(pair[0]);
    REQUIRE(uid.ok());
    CHECK(*uid == geteuid());
    close(pair[0]);
    close(pair[1]);
    CHECK_FALSE(peer_uid(-1).ok());
}

TEST_CASE("the event queue drops the oldest lines and counts them") {
    EventQueue q(3);
    CHECK(q.empty());
    for (int i = 1; i <= 5; ++i) q.push(std::to_string(i));
    CHECK(q.size() == 3);
    auto batch = q.take();
    CHECK(batch.lines == std::vector<std::string>{"3", "4", "5"});
    CHECK(batch.dropped == 2);
    CHECK(q.empty());
    q.push("6");
    batch = q.take();
    CHECK(batch.lines == std::vector<std::string>{"6"});
    CHECK(batch.dropped == 0);  // counted once, then reset
    CHECK(q.dropped_total() == 2);

    // Drops alone still wake the reader so it learns of them.
    EventQueue one(1);
    one.push("a");
    one.push("b");
    CHECK(one.take().dropped == 1);
    CHECK(EventQueue(0).empty());  // a zero capacity is taken as 1
}

TEST_CASE("the dropped notice is an event line") {
    Json j = dropped_notice("vm1", 7);
    CHECK(j["event"] == "events-dropped");
    CHECK(j["vm"] == "vm1");
    CHECK(j["count"] == 7);
    CHECK(j["time"].get<std::string>().size() == std::string("2026-11-21T22:10:03.123456Z").size());
}

TEST_CASE("a placed device renders like topology's devices") {
    topology::Device d;
    d.name = "data";
    d.kind = topology::DeviceKind::disk;
    d.driver = "virtio-blk-pci";
    d.id = "data";
    d.address = spec::PciAddress{0, 0x10, 0, 0};
    d.parent = "rp.disks.0";
    d.serial = "data";
    Response r = device_response(d);
    CHECK(r.status == 201);
    CHECK(
        Json::parse(r.body).dump() ==
        R"({"name":"data","kind":"disk","driver":"virtio-blk-pci","id":"data","address":"0000:10:00.0","parent":"rp.disks.0","serial":"data"})");
    // Built in code, a name need not be UTF-8: an error answer, never an exception.
    d.name = "da\xfft\xc3";
    Response bad = device_response(d);
    CHECK(bad.status == 400);
    CHECK(Json::parse(bad.body)["error"]["code"] == "invalid_spec");
}

TEST_CASE("answers echoing bytes that are not UTF-8 are still written") {
    // GET /v1/vm\xff: the 404 message quotes the path; nlohmann's dump() would throw on it.
    Route r = route("GET", "/v1/vm\xff\x80");
    REQUIRE(r.outcome == Route::Outcome::not_found);
    Response resp = route_error(r);
    CHECK(resp.status == 404);
    Json body = Json::parse(resp.body);
    CHECK(body["error"]["code"] == "not_found");
    CHECK(body["error"]["message"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
    // The same for a decoded name: DELETE /v1/vm/disks/%FF reaches the Vm as a 1-byte name.
    CHECK(route("DELETE", "/v1/vm/disks/%FF").name == "\xff");
    Response named = error_response(make_error(Errc::not_found, "no disk named '\xff'"));
    CHECK(Json::parse(named.body)["error"]["code"] == "not_found");
}

namespace {

// A private folder for socket files, removed at the end.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "qshim-api-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()));
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

int bound_socket(const std::string& path, bool listening) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (listening) REQUIRE(listen(fd, 1) == 0);
    return fd;
}

}  // namespace

TEST_CASE("the socket file is created 0600 even under a permissive umask") {
    TempDir dir;
    const std::string path = (dir.path / "api.sock").string();
    mode_t old = umask(0);
    auto l = listen_unix(path, 4);
    umask(old);
    REQUIRE(l.ok());
    struct stat st {};
    REQUIRE(lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(umask(old) == old);  // restored
    close(l->fd);
    unlink_if_same(path, l->dev, l->ino);
    CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("a stale socket is replaced; a live one or another file is an error") {
    TempDir dir;
    const std::string path = (dir.path / "api.sock").string();

    SECTION("stale: bound but no listener, as a killed run leaves it") {
        close(bound_socket(path, false));
        auto l = listen_unix(path, 4);
        REQUIRE(l.ok());
        close(l->fd);
    }
    SECTION("live") {
        int fd = bound_socket(path, true);
        auto l = listen_unix(path, 4);
        REQUIRE_FALSE(l.ok());
        CHECK(l.error().code == Errc::conflict);
        CHECK(std::filesystem::exists(path));
        close(fd);
    }
    SECTION("a regular file is never deleted") {
        std::ofstream(path) << "precious";
        auto l = listen_unix(path, 4);
        REQUIRE_FALSE(l.ok());
        CHECK(l.error().code == Errc::conflict);
        CHECK(std::filesystem::is_regular_file(path));
    }
    SECTION("a path too long for sun_path") {
        auto l = listen_unix((dir.path / std::string(120, 'x')).string(), 4);
        REQUIRE_FALSE(l.ok());
        CHECK(l.error().code == Errc::invalid_spec);
    }
    SECTION("a missing folder") {
        auto l = listen_unix((dir.path / "no" / "api.sock").string(), 4);
        REQUIRE_FALSE(l.ok());
        CHECK(l.error().code == Errc::io);
    }
    SECTION("stop removes only its own file") {
        auto l = listen_unix(path, 4);
        REQUIRE(l.ok());
        unlink(path.c_str());
        close(bound_socket(path, false));  // someone else's socket now
        unlink_if_same(path, l->dev, l->ino);
        CHECK(std::filesystem::exists(path));
        close(l->fd);  // only now: while it is open its inode cannot be reused by the new file
    }
}
