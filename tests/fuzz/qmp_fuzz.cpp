// libFuzzer target: bytes as a QMP stream through the line framer and the message parser.
//
// The input's front is the stream; its back (FuzzedDataProvider takes integers from the end)
// picks the framer's bound (1..512 bytes) and where the stream is cut into reads. Beyond "no
// crash" it checks:
// - the framer's result does not depend on how the stream is cut: it equals a reference model
//   (split at '\n', strip one '\r', drop empty lines, stop at the first line over the bound), so
//   no line is ever longer than the bound and the lines plus the pending bytes account for every
//   byte of the input;
// - while the framer has not failed it holds at most bound + 1 bytes of an unfinished line;
// - parse_message never throws, classifies a line the same way as an independent parse with
//   nlohmann (valid JSON object or not), refuses with one of its documented messages, quotes at
//   most a bounded snippet, and what it accepts can be serialized again.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "qmp/framing.hpp"
#include "qmp/message.hpp"

namespace {

using namespace qshim::qmp;
using namespace qshim::qmp::detail;

[[noreturn]] void broken(const char* what, std::string_view detail) {
    std::fprintf(stderr, "qmp-fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

// What the framer must produce for a whole stream, however it arrives.
struct Expected {
    std::vector<std::string> lines;
    bool too_long = false;
    std::size_t pending = 0;  // bytes after the last '\n', when not too_long
};

Expected reference(std::string_view stream, std::size_t max) {
    Expected out;
    for (;;) {
        std::size_t nl = stream.find('\n');
        if (nl == std::string_view::npos) break;
        std::string_view line = stream.substr(0, nl);
        stream.remove_prefix(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > max) {
            out.too_long = true;
            return out;
        }
        if (!line.empty()) out.lines.emplace_back(line);
    }
    // An unfinished line is refused as soon as it cannot fit even with a '\r' still to strip.
    if (stream.size() > max + 1) out.too_long = true;
    out.pending = stream.size();
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

void check_refusal(const std::string& message, std::string_view line) {
    static const char* const quoting[] = {
        "the peer sent a line that is not JSON: ",
        "a QMP message is not a JSON object: ",
        "expected the QMP greeting, got: ",
        "an event whose name is not a string: ",
        "a reply without id: ",
        "a malformed QMP error: ",
        "a QMP message that is neither a reply nor an event: ",
    };
    if (message == "a QMP message nests deeper than 1024 levels") return;
    for (const char* prefix : quoting) {
        if (!starts_with(message, prefix)) continue;
        if (message.substr(std::string_view(prefix).size()) != snippet(line))
            broken("a refusal does not quote the line's snippet", message);
        if (message.size() > std::string_view(prefix).size() + 120 + 32)
            broken("a refusal quotes too much of the line", message);
        return;
    }
    broken("a refusal with an undocumented message", message);
}

// Returns true when the line was the greeting.
bool check_parse(const std::string& line, bool greeting_expected) {
    ParsedMessage parsed = parse_message(line, greeting_expected);
    // nlohmann without a callback or depth limit: the input is at most a few KiB deep.
    Json plain = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool object = !plain.is_discarded() && plain.is_object();
    if (auto* e = std::get_if<ProtocolError>(&parsed)) {
        check_refusal(e->message, line);
        const bool not_json = starts_with(e->message, "the peer sent a line that is not JSON");
        const bool too_deep = e->message == "a QMP message nests deeper than 1024 levels";
        if (!too_deep && not_json != plain.is_discarded())
            broken("JSON or not, the parsers disagree", line);
        return false;
    }
    if (!object) broken("accepted a line that is not a JSON object", line);
    if (auto* g = std::get_if<Greeting>(&parsed)) {
        if (!greeting_expected) broken("a greeting where none was expected", line);
        if (!g->qmp.is_object() || g->qmp != plain.at("QMP"))
            broken("the greeting is not the line's QMP object", line);
        (void)g->qmp.dump();
        return true;
    }
    if (greeting_expected) broken("accepted something else than the greeting first", line);
    if (auto* ev = std::get_if<Event>(&parsed)) {
        if (!plain.contains("event") || plain.at("event") != ev->name)
            broken("the event's name is not the line's", line);
        Json data = plain.contains("data") ? plain.at("data") : Json::object();
        if (ev->data != data) broken("the event's data is not the line's", line);
        (void)ev->data.dump();
        (void)ev->timestamp.dump();
        return false;
    }
    auto& reply = std::get<Reply>(parsed);
    if (plain.contains("event") || !plain.contains("id") ||
        !(plain.contains("return") || plain.contains("error")))
        broken("a reply that is not one", line);
    const Json& id = plain.at("id");
    if (reply.id != (id.is_string() ? id.get<std::string>() : id.dump()))
        broken("the reply's id is not the line's", line);
    if (auto* m = std::get_if<ProtocolError>(&reply.outcome)) {
        if (!starts_with(m->message, "a malformed QMP error: "))
            broken("a reply's outcome refused for another reason", m->message);
        check_refusal(m->message, line);
    } else if (auto* err = std::get_if<ReplyError>(&reply.outcome)) {
        if (plain.at("error").at("class") != err->cls || plain.at("error").at("desc") != err->desc)
            broken("the reply's error is not the line's", line);
    } else {
        const Json& result = std::get<Json>(reply.outcome);
        if (plain.contains("error") || result != plain.at("return"))
            broken("the reply's return value is not the line's", line);
        (void)result.dump();
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider input(data, size);
    const auto max = input.ConsumeIntegralInRange<std::size_t>(1, 512);
    std::vector<std::string> reads;
    std::string stream;
    while (input.remaining_bytes() > 0) {
        auto n = input.ConsumeIntegralInRange<std::size_t>(1, 1024);
        reads.push_back(input.ConsumeBytesAsString(n));
        stream += reads.back();
    }
    const Expected expected = reference(stream, max);

    LineFramer framer(max);
    std::vector<std::string> lines;
    bool too_long = false;
    std::size_t since_newline = 0;  // bytes appended after the last '\n' so far
    bool greeting_seen = false;
    for (const std::string& chunk : reads) {
        framer.append(chunk);
        std::size_t nl = chunk.rfind('\n');
        since_newline =
            nl == std::string::npos ? since_newline + chunk.size() : chunk.size() - nl - 1;
        std::string line;
        LineFramer::Status status;
        while (!too_long && (status = framer.next(line)) != LineFramer::Status::incomplete) {
            if (status == LineFramer::Status::too_long) {
                too_long = true;
                break;
            }
            if (line.size() > max) broken("a line longer than the bound", line);
            if (line.empty() || line.find('\n') != std::string::npos)
                broken("an empty line, or one with a newline in it", line);
            lines.push_back(line);
            // Like the client: the greeting first, then everything else (even after a refusal,
            // to reach more of the parser).
            if (check_parse(line, !greeting_seen)) greeting_seen = true;
        }
        if (too_long) break;
        if (framer.pending_bytes() != since_newline)
            broken("pending bytes are not the bytes after the last newline", stream);
        if (framer.pending_bytes() > max + 1) broken("the framer holds more than a line", stream);
    }
    if (lines != expected.lines) broken("the lines depend on how the stream was cut", stream);
    if (too_long != expected.too_long)
        broken(
            too_long ? "too_long without an over-long line" : "an over-long line was let through",
            stream);
    if (!too_long && framer.pending_bytes() != expected.pending)
        broken("pending bytes do not account for the end of the stream", stream);
    return 0;
}
