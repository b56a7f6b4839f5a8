// Error bodies, the Errc -> HTTP status mapping, and the device JSON of the control API.
#include "api/json.hpp"

#include <fmt/format.h>

#include "common/clock.hpp"
#include "common/json_yaml.hpp"

namespace qshim::api {

const char* errc_name(Errc code) {
    switch (code) {
        case Errc::invalid_spec:
            return "invalid_spec";
        case Errc::io:
            return "io";
        case Errc::topology:
            return "topology";
        case Errc::qmp:
            return "qmp";
        case Errc::protocol:
            return "protocol";
        case Errc::launch:
            return "launch";
        case Errc::timeout:
            return "timeout";
        case Errc::interrupted:
            return "interrupted";
        case Errc::state:
            return "state";
        case Errc::not_found:
            return "not_found";
        case Errc::conflict:
            return "conflict";
        case Errc::unsupported:
            return "unsupported";
        case Errc::internal:
            return "internal";
    }
    return "internal";
}

int http_status(const Error& error) {
    switch (error.code) {
        case Errc::invalid_spec:
            return 400;
        case Errc::not_found:
            return 404;
        // A device that cannot be placed (no free port of its class, a pinned address taken)
        // is a conflict with the VM's current layout, not a malformed request.
        case Errc::conflict:
        case Errc::topology:
            return 409;
        case Errc::unsupported:
            return 501;
        // QEMU (or the connection to it) is not there to answer: try again later, or give up;
        // the request itself was fine.
        case Errc::state:
        case Errc::interrupted:
        case Errc::protocol:
            return 503;
        case Errc::timeout:
            return 504;
        case Errc::qmp:
            // QEMU answered: its class says whose fault it was.
            if (error.qmp_class == "DeviceNotFound") return 404;
            if (error.qmp_class == "CommandNotFound") return 501;
            return 500;
        case Errc::io:
        case Errc::launch:
        case Errc::internal:
            return 500;
    }
    return 500;
}

Json error_body(const Error& error) {
    Json e;
    e["code"] = errc_name(error.code);
    e["message"] = error.what();
    if (!error.qmp_class.empty()) e["qmpClass"] = error.qmp_class;
    if (!error.diagnostics.empty()) {
        Json fields = Json::array();
        for (const auto& d : error.diagnostics) {
            Json f;
            f["path"] = d.path;
            f["line"] = d.line;
            f["column"] = d.column;
            f["reason"] = d.reason;
            fields.push_back(std::move(f));
        }
        e["fields"] = std::move(fields);
    }
    Json body;
    body["error"] = std::move(e);
    return body;
}

Json error_body(std::string_view code, std::string_view message) {
    Json e;
    e["code"] = code;
    e["message"] = message;
    Json body;
    body["error"] = std::move(e);
    return body;
}

Response device_response(const topology::Device& d) {
    auto text = topology::to_json(d);
    if (!text) return error_response(text.error());
    return json_response(201, Json::parse(*text));
}

Json dropped_notice(std::string_view vm_name, std::size_t count) {
    Json j;
    j["event"] = "events-dropped";
    j["time"] = qshim::detail::now_rfc3339();
    j["vm"] = vm_name;
    j["count"] = count;
    return j;
}

Response json_response(int status, const Json& body) {
    // Pretty, like every other qshim output: the API is read by people with curl as well.
    // Lossy: a request path or name that is not valid UTF-8 is echoed in error messages, and
    // the answer must still be written (bytes that are not UTF-8 become U+FFFD).
    return Response{status, qshim::detail::dump_lossy(body, 2) + "\n", {}};
}

Response error_response(const Error& error) {
    return json_response(http_status(error), error_body(error));
}

Response error_response(int status, std::string_view code, std::string_view message) {
    return json_response(status, error_body(code, message));
}

Response route_error(const Route& route) {
    switch (route.outcome) {
        case Route::Outcome::method_not_allowed: {
            Response r = error_response(405, "method_not_allowed", route.message);
            r.allow = route.allow;
            return r;
        }
        case Route::Outcome::bad_request:
            if (!route.bad_field.empty()) return field_error(route.bad_field, route.message);
            return error_response(400, "bad_request", route.message);
        case Route::Outcome::not_found:
        case Route::Outcome::ok:
            break;
    }
    return error_response(404, "not_found", route.message);
}

Response field_error(std::string path, std::string reason) {
    Error e = make_error(Errc::invalid_spec, path.empty() ? reason : path + ": " + reason);
    Diagnostic d;
    d.file = "request";
    d.path = std::move(path);
    d.reason = std::move(reason);
    e.diagnostics.push_back(std::move(d));
    return error_response(e);
}

}  // namespace qshim::api
