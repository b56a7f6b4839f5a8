// The HTTP client of `qshim ctl`: one synchronous request over the API's unix socket.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace qshim::cli {

struct HttpReply {
    int status = 0;
    std::string body;  // empty when streamed to on_data
};

struct HttpRequest {
    std::string method;  // "GET", "POST", "DELETE"
    std::string target;  // "/v1/vm/disks/data?timeoutSeconds=5", already percent-encoded
    std::string body;    // JSON; empty for none
};

// Sends `request` to the API at `socket_path` and reads the answer. A 200 answer is passed to
// `on_data` piece by piece as it arrives when given (the event stream), first with an empty piece
// once the answer's head is in (the stream is open); otherwise it is collected.
// nullopt, with `error` set, when the socket cannot be reached or the connection breaks.
std::optional<HttpReply> http_call(const std::string& socket_path, const HttpRequest& request,
                                   std::string& error,
                                   const std::function<void(std::string_view)>& on_data = nullptr);

// One path segment, percent-encoded: a name with any byte in it stays one segment.
std::string percent_encode(std::string_view text);

}  // namespace qshim::cli
