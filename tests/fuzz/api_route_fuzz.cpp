// libFuzzer target: the control API's pure request handling, without sockets: fast, so deep.
//
// The input is cut into a method, a request target and a body (FuzzedDataProvider), which go
// through route(), the parameter parsers and the device body parsers exactly as api-fuzz's
// server would call them, and route_error()/error_response() render the answer. Beyond "no
// crash" it checks that:
// - a routed request names an endpoint that takes its method, a decoded {name} that is non-empty
//   (and free of NUL unless the target had a raw one, which the HTTP parser never lets through),
//   and only the query key that endpoint accepts;
// - a refused one says why, and a 405 lists the methods allowed;
// - every answer body is one JSON object with an "error" member whose status matches its code;
// - percent_decode inverts percent-encoding, and parse_query finds each key it was given;
// - a migrate body is refused with a 400, or accepted with a URI;
// - parse_disk / parse_interface refuse only with invalid_spec and positioned diagnostics.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <qshim/spec.hpp>
#include <string>
#include <string_view>

#include "api/json.hpp"
#include "api/params.hpp"
#include "api/routes.hpp"

namespace {

using namespace qshim;
using namespace qshim::api;

[[noreturn]] void broken(const char* what, std::string_view detail) {
    std::fprintf(stderr, "api-route-fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

const spec::VmSpec& vm() {
    static const spec::VmSpec s = [] {
        auto loaded = spec::parse_spec(
            "name: fuzz\ndisks: [{name: root, path: /fuzz/root.img, format: raw}]\n"
            "interfaces: [{name: net0, backend: {type: user}}]\n",
            "/fuzz/vm.yaml");
        if (!loaded) {
            std::string why = loaded.error().what();
            for (const auto& d : loaded.error().diagnostics) why += "\n" + to_string(d);
            broken("the fixed spec does not load", why);
        }
        return std::move(loaded).value();
    }();
    return s;
}

void check_answer(const Response& r, std::string_view context) {
    auto body = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object() || !body.contains("error"))
        broken("an answer that is not an error body", r.body);
    const Json& code = body["error"]["code"];
    if (!code.is_string() || !body["error"]["message"].is_string())
        broken("an error body without code or message", r.body);
    if (r.status < 400 || r.status > 599) broken("an error answered with a success", context);
    if (r.status == 405 && r.allow.empty()) broken("a 405 without Allow", context);
    // Every code but qmp, whose status also depends on QEMU's class.
    for (Errc e : {Errc::invalid_spec, Errc::not_found, Errc::conflict, Errc::topology,
                   Errc::unsupported, Errc::state, Errc::timeout, Errc::io, Errc::internal,
                   Errc::interrupted, Errc::protocol, Errc::launch})
        if (code == errc_name(e) && http_status(make_error(e, "")) != r.status)
            broken("a status that does not match the error code", r.body);
}

std::string percent_encode(std::string_view s) {
    static const char* const hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    return out;
}

void check_decoding(std::string_view text) {
    if (text.find('\0') == std::string_view::npos) {
        auto decoded = percent_decode(percent_encode(text));
        if (!decoded || *decoded != text) broken("percent_decode does not invert encoding", text);
    }
    auto plain = percent_decode(text, false);
    auto spaced = percent_decode(text, true);
    if (plain.has_value() != spaced.has_value()) broken("'+' changed whether text decodes", text);
    // Only an encoded NUL is refused: a raw one never gets past the HTTP parser to here.
    if (plain && plain->find('\0') != std::string::npos &&
        text.find('\0') == std::string_view::npos)
        broken("a decoded NUL", text);
    if (auto query = parse_query(text))
        for (const auto& [key, value] : *query)
            if (key.empty()) broken("an empty query key", text);
    // A query built from one encoded pair gives back that pair.
    if (!text.empty() && text.find('\0') == std::string_view::npos) {
        auto one = parse_query(percent_encode(text) + "=" + percent_encode(text));
        if (!one || one->size() != 1 || one->begin()->first != text || one->begin()->second != text)
            broken("parse_query lost an encoded pair", text);
    }
}

void check_device_error(const Error& e, std::string_view body) {
    if (e.code != Errc::invalid_spec) broken("a device body refused with another code", e.what());
    if (e.diagnostics.empty()) broken("a device body refused without diagnostics", body);
    for (const auto& d : e.diagnostics)
        if (d.line < 0 || d.column < 0 || d.reason.empty())
            broken("a malformed diagnostic", to_string(d));
    check_answer(error_response(e), body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider input(data, size);
    static const char* const methods[] = {"GET", "POST", "DELETE", "PUT", "HEAD", "get"};
    std::string method = input.ConsumeBool() ? methods[input.ConsumeIntegralInRange<int>(0, 5)]
                                             : input.ConsumeRandomLengthString(16);
    std::string target = input.ConsumeRandomLengthString(512);
    std::string body = input.ConsumeRemainingBytesAsString();

    Route r = route(method, target);
    if (r.outcome == Route::Outcome::ok) {
        const bool named = r.endpoint == Endpoint::disk || r.endpoint == Endpoint::interface;
        if (named == r.name.empty())
            broken("a name where none belongs, or none where one does", target);
        if (r.name.find('\0') != std::string::npos && target.find('\0') == std::string::npos)
            broken("a name with a NUL", target);
        for (const auto& [key, value] : r.query)
            if (key != "timeoutSeconds" || !named)
                broken("a query key the endpoint does not take", target);
        Timeout t = timeout_param(r);
        if (t.error)
            check_answer(*t.error, target);
        else if (t.value.count() < 0 || t.value > std::chrono::seconds(max_timeout_seconds))
            broken("a timeout out of range", target);
        if (!r.message.empty() || !r.allow.empty())
            broken("a routed request with a refusal", target);
    } else {
        if (r.message.empty()) broken("a refusal without a reason", target);
        check_answer(route_error(r), target);
    }

    check_decoding(target);

    Grace g = shutdown_body(body);
    if (g.error) check_answer(*g.error, body);
    // A migrate body is accepted only with a URI; a refusal is a 400 naming a field.
    Migration m = migrate_body(body);
    if (m.error) check_answer(*m.error, body);
    if (!m.error && m.value.uri.empty()) broken("a migrate body accepted without a uri", body);
    auto disk = spec::parse_disk(body, vm());
    if (!disk) check_device_error(disk.error(), body);
    auto nic = spec::parse_interface(body, vm());
    if (!nic) check_device_error(nic.error(), body);
    return 0;
}
