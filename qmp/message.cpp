// parse_message: the checks a QMP line must pass before the client routes it.
#include "qmp/message.hpp"

#include <fmt/format.h>

namespace qshim::qmp::detail {

std::string snippet(std::string_view text) {
    constexpr std::size_t limit = 120;
    if (text.size() <= limit) return std::string(text);
    return fmt::format("{}... ({} bytes)", text.substr(0, limit), text.size());
}

namespace {

ProtocolError violation(std::string_view what, std::string_view line) {
    return ProtocolError{std::string(what) + snippet(line)};
}

ParsedMessage parse_event(Json& msg, std::string_view line) {
    Json& name = msg.at("event");
    if (!name.is_string()) return violation("an event whose name is not a string: ", line);
    Event event;
    event.name = name.get<std::string>();
    auto data = msg.find("data");
    event.data = data != msg.end() ? std::move(*data) : Json::object();
    auto timestamp = msg.find("timestamp");
    if (timestamp != msg.end()) event.timestamp = std::move(*timestamp);
    return event;
}

ParsedMessage parse_reply(Json& msg, std::string_view line) {
    auto id_member = msg.find("id");
    if (id_member == msg.end()) {
        // QEMU answers a command it could not even parse without an id; the stream can no longer
        // be trusted to pair replies with commands (QMP spec, "Error" note).
        return violation("a reply without id: ", line);
    }
    Reply reply;
    reply.id = id_member->is_string() ? id_member->get<std::string>() : id_member->dump();
    if (auto error = msg.find("error"); error != msg.end()) {
        auto cls = error->is_object() ? error->find("class") : error->end();
        auto desc = error->is_object() ? error->find("desc") : error->end();
        if (!error->is_object() || cls == error->end() || !cls->is_string() ||
            desc == error->end() || !desc->is_string())
            reply.outcome = violation("a malformed QMP error: ", line);
        else
            reply.outcome = ReplyError{cls->get<std::string>(), desc->get<std::string>()};
    } else {
        reply.outcome = std::move(msg.at("return"));
    }
    return reply;
}

}  // namespace

ParsedMessage parse_message(std::string_view line, bool greeting_expected) {
    bool too_deep = false;
    Json msg = Json::parse(
        line,
        [&too_deep](int depth, Json::parse_event_t, Json&) {
            if (depth > max_json_depth) too_deep = true;
            return !too_deep;  // keep nothing once too deep: the message is refused anyway
        },
        /*allow_exceptions=*/false);
    if (too_deep)
        return ProtocolError{
            fmt::format("a QMP message nests deeper than {} levels", max_json_depth)};
    if (msg.is_discarded()) return violation("the peer sent a line that is not JSON: ", line);
    if (!msg.is_object()) return violation("a QMP message is not a JSON object: ", line);
    if (greeting_expected) {
        auto qmp = msg.find("QMP");
        if (qmp == msg.end() || !qmp->is_object())
            return violation("expected the QMP greeting, got: ", line);
        return Greeting{std::move(*qmp)};
    }
    if (msg.contains("event")) return parse_event(msg, line);
    if (msg.contains("return") || msg.contains("error")) return parse_reply(msg, line);
    return violation("a QMP message that is neither a reply nor an event: ", line);
}

}  // namespace qshim::qmp::detail
