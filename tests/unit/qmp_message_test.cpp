// parse_message: classifying one QMP line as greeting, event, reply or protocol error.
#include <catch2/catch.hpp>
#include <string>

#include "qmp/message.hpp"

using namespace qshim;
using namespace qshim::qmp::detail;
using qshim::qmp::Event;
using qshim::qmp::Json;

namespace {

// The message of a protocol error, or a note saying the line was accepted.
std::string refusal(std::string_view line, bool greeting_expected = false) {
    auto parsed = parse_message(line, greeting_expected);
    if (auto* e = std::get_if<ProtocolError>(&parsed)) return e->message;
    return "(accepted)";
}

Reply reply(std::string_view line) {
    auto parsed = parse_message(line, false);
    REQUIRE(std::holds_alternative<Reply>(parsed));
    return std::get<Reply>(std::move(parsed));
}

}  // namespace

TEST_CASE("the greeting yields its QMP member", "[qmp][message]") {
    auto parsed = parse_message(
        R"({"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}})", true);
    REQUIRE(std::holds_alternative<Greeting>(parsed));
    const Json& qmp = std::get<Greeting>(parsed).qmp;
    CHECK(qmp.at("version").at("qemu").at("major") == 7);
    CHECK(qmp.at("capabilities") == Json::array({"oob"}));
}

TEST_CASE("before the greeting, anything else is refused", "[qmp][message]") {
    CHECK(refusal(R"({"return": {}, "id": "qshim-1"})", true) ==
          R"(expected the QMP greeting, got: {"return": {}, "id": "qshim-1"})");
    CHECK(refusal(R"({"QMP": 1})", true) == R"(expected the QMP greeting, got: {"QMP": 1})");
    CHECK(refusal(R"({"event": "STOP"})", true).rfind("expected the QMP greeting", 0) == 0);
    // After the greeting a second one is neither a reply nor an event.
    CHECK(refusal(R"({"QMP": {}})") ==
          R"(a QMP message that is neither a reply nor an event: {"QMP": {}})");
}

TEST_CASE("an event keeps its name, data and timestamp", "[qmp][message]") {
    auto parsed = parse_message(R"({"event": "DEVICE_DELETED", "data": {"device": "d1"},)"
                                R"( "timestamp": {"seconds": 1, "microseconds": 2}})",
                                false);
    REQUIRE(std::holds_alternative<Event>(parsed));
    const Event& e = std::get<Event>(parsed);
    CHECK(e.name == "DEVICE_DELETED");
    CHECK(e.data == Json{{"device", "d1"}});
    CHECK(e.timestamp == Json{{"seconds", 1}, {"microseconds", 2}});

    auto bare = parse_message(R"({"event": "STOP"})", false);
    REQUIRE(std::holds_alternative<Event>(bare));
    CHECK(std::get<Event>(bare).data == Json::object());
    CHECK(std::get<Event>(bare).timestamp.is_null());

    // "event" wins over "return": QEMU never sends both, but the order of the checks is fixed.
    CHECK(std::holds_alternative<Event>(parse_message(R"({"event": "X", "return": 1})", false)));
    CHECK(refusal(R"({"event": 5})") == R"(an event whose name is not a string: {"event": 5})");
}

TEST_CASE("a reply carries its id and its return value or error", "[qmp][message]") {
    Reply ok = reply(R"({"return": {"status": "running"}, "id": "qshim-7"})");
    CHECK(ok.id == "qshim-7");
    REQUIRE(std::holds_alternative<Json>(ok.outcome));
    CHECK(std::get<Json>(ok.outcome) == Json{{"status", "running"}});

    Reply failed =
        reply(R"({"error": {"class": "DeviceNotFound", "desc": "no disk"}, "id": "qshim-8"})");
    REQUIRE(std::holds_alternative<ReplyError>(failed.outcome));
    CHECK(std::get<ReplyError>(failed.outcome).cls == "DeviceNotFound");
    CHECK(std::get<ReplyError>(failed.outcome).desc == "no disk");

    // An id that is not a string matches nothing of ours but is still a reply.
    CHECK(reply(R"({"return": {}, "id": 12})").id == "12");
    CHECK(reply(R"({"return": {}, "id": {"a": [1]}})").id == R"({"a":[1]})");
}

TEST_CASE("a malformed error is kept for the caller to judge", "[qmp][message]") {
    // The client fails the connection only when the reply answers a pending command.
    for (const char* line :
         {R"({"error": "bad", "id": "qshim-1"})", R"({"error": {"desc": "d"}, "id": "qshim-1"})",
          R"({"error": {"class": "C"}, "id": "qshim-1"})",
          R"({"error": {"class": 1, "desc": "d"}, "id": "qshim-1"})",
          R"({"error": {"class": "C", "desc": null}, "id": "qshim-1"})"}) {
        INFO(line);
        Reply r = reply(line);
        CHECK(r.id == "qshim-1");
        REQUIRE(std::holds_alternative<ProtocolError>(r.outcome));
        CHECK(std::get<ProtocolError>(r.outcome).message ==
              std::string("a malformed QMP error: ") + line);
    }
    // "error" is looked at before "return".
    Reply both = reply(R"({"return": 1, "error": {"class": "C", "desc": "d"}, "id": "i"})");
    CHECK(std::holds_alternative<ReplyError>(both.outcome));
}

TEST_CASE("lines that break the protocol are refused with a reason", "[qmp][message]") {
    CHECK(refusal(R"({"return": {}})") == R"(a reply without id: {"return": {}})");
    CHECK(refusal(R"({"error": {"class": "C", "desc": "d"}})") ==
          R"(a reply without id: {"error": {"class": "C", "desc": "d"}})");
    CHECK(refusal("not json") == "the peer sent a line that is not JSON: not json");
    CHECK(refusal("{\"a\": \"\xff\"}").rfind("the peer sent a line that is not JSON", 0) == 0);
    CHECK(refusal("") == "the peer sent a line that is not JSON: ");
    CHECK(refusal("[1, 2]") == "a QMP message is not a JSON object: [1, 2]");
    CHECK(refusal("[1, 2]", true) == "a QMP message is not a JSON object: [1, 2]");
    CHECK(refusal(R"({"hello": 1})") ==
          R"(a QMP message that is neither a reply nor an event: {"hello": 1})");
}

TEST_CASE("nesting is bounded at 1024 levels", "[qmp][message]") {
    auto nested = [](int depth) {
        return R"({"return": )" + std::string(depth, '[') + std::string(depth, ']') +
               R"(, "id": "i"})";
    };
    // The outer object is at depth 0, so 1024 arrays inside it are the deepest accepted.
    CHECK(std::holds_alternative<Reply>(parse_message(nested(max_json_depth), false)));
    CHECK(refusal(nested(max_json_depth + 1)) == "a QMP message nests deeper than 1024 levels");
    CHECK(refusal(nested(100'000)) == "a QMP message nests deeper than 1024 levels");
    CHECK(refusal(std::string(100'000, '['), true) ==
          "a QMP message nests deeper than 1024 levels");
}

TEST_CASE("a long offending line is quoted only in part", "[qmp][message]") {
    std::string line = R"({"hello": ")" + std::string(500, 'x') + R"("})";
    std::string message = refusal(line);
    CHECK(message == "a QMP message that is neither a reply nor an event: " + line.substr(0, 120) +
                         "... (513 bytes)");
    CHECK(snippet(std::string(120, 'a')) == std::string(120, 'a'));
    CHECK(snippet(std::string(121, 'a')) == std::string(120, 'a') + "... (121 bytes)");
}
