// Internal: one QMP line parsed and classified (greeting, event, reply or protocol error). Pure.
#pragma once

#include <nlohmann/json.hpp>
#include <qshim/qmp.hpp>
#include <string>
#include <string_view>
#include <variant>

namespace qshim::qmp::detail {

// QEMU's own JSON parser refuses deeper nesting. The limit also keeps nlohmann's recursive copy
// and dump from overflowing the stack on a hostile message (QEMU runs guest-influenced code).
inline constexpr int max_json_depth = 1024;

// Enough of an offending message to recognise it in an error, never megabytes of it.
std::string snippet(std::string_view text);

// The "QMP" member of the greeting: version and capabilities.
struct Greeting {
    Json qmp;
};

// A protocol violation: the connection can no longer be trusted. `message` says which.
struct ProtocolError {
    std::string message;
};

struct ReplyError {
    std::string cls;   // QMP error class, e.g. "GenericError"
    std::string desc;  // QEMU's description
};

struct Reply {
    // The id as a string; an id of another JSON type is its JSON text (it can match no command
    // of ours, but it is still a reply and is counted as one).
    std::string id;
    // The "return" member, the error, or a malformed error. A malformed error breaks the
    // protocol only when it answers a command we are waiting for: a stray reply is just counted.
    std::variant<Json, ReplyError, ProtocolError> outcome;
};

using ParsedMessage = std::variant<Greeting, Event, Reply, ProtocolError>;

// Classifies one line (without its newline). Before the greeting, only the greeting is valid;
// after it, a message is an event if it has "event", else a reply if it has "return" or "error".
// Never throws for any input.
ParsedMessage parse_message(std::string_view line, bool greeting_expected);

}  // namespace qshim::qmp::detail
