// The control API's JSON vocabulary: error bodies, status codes and device renderings.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <qshim/error.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <string_view>

#include "api/routes.hpp"

namespace qshim::api {

// Insertion-ordered, so a response reads the same every time (and the way docs/api.md shows it).
using Json = nlohmann::ordered_json;

// The stable identifier of an Errc as it appears in error bodies: "invalid_spec", "not_found", ...
const char* errc_name(Errc code);

// By the error's class (docs/api.md): invalid_spec 400; not_found 404; conflict and topology 409;
// unsupported 501; state, interrupted and protocol 503 (QEMU or its connection is not there to
// answer); timeout 504; qmp by QEMU's class (DeviceNotFound 404, CommandNotFound 501, else 500);
// io, launch and internal 500.
int http_status(const Error& error);

// {"error": {"code", "message", "qmpClass"?, "fields"?: [{"path","line","column","reason"}]}}
Json error_body(const Error& error);
// For the server's own conditions that are not an Errc: "forbidden", "method_not_allowed",
// "bad_request", "payload_too_large", "headers_too_large", "busy" (docs/api.md).
Json error_body(std::string_view code, std::string_view message);

// 201 with a placed device, in the shape `qshim topology` prints under "devices".
struct Response;
Response device_response(const topology::Device& device);

// The line the event stream inserts where it had to drop events for a slow reader.
Json dropped_notice(std::string_view vm_name, std::size_t count);

// A complete answer to one request (the event stream is the one endpoint that is not).
struct Response {
    int status = 200;
    std::string body;   // JSON text ending in a newline
    std::string allow;  // the Allow header of a 405
};
Response json_response(int status, const Json& body);
Response error_response(const Error& error);  // status from http_status(error)
Response error_response(int status, std::string_view code, std::string_view message);
// The answer to a request that routing already rejected: 404, 405 (with Allow) or 400.
Response route_error(const Route& route);

// A 400 about one field of the request (a query parameter or a body key), in the shape of a spec
// diagnostic so a client prints every validation problem the same way.
Response field_error(std::string path, std::string reason);

}  // namespace qshim::api
