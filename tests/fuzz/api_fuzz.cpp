// libFuzzer target: bytes as everything a client sends on one control API connection.
//
// Per input: a fresh io_context, a socketpair, and a Vm planned from a small fixed spec but never
// started (state `created`: every call that needs QEMU answers with an error). serve_connection
// runs on one end; the input is written to the other, whose write side is then shut, and every
// byte the server sends back is read. Beyond "no crash" it checks that:
// - the connection ends on its own (no hang, no exception out of the session);
// - the bytes sent back are a sequence of complete HTTP/1.x responses; only an event stream, cut
//   short by the client leaving, may be unfinished, and nothing follows it or a "close" response;
// - every response but "100 Continue" and the event stream is application/json, with a body that
//   is one JSON object: an error body ({"error": {"code", "message", ...}}, code documented for
//   its status, never "internal") for a 4xx/5xx, and no "error" member otherwise; a 405 has Allow.
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <nlohmann/json.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <qshim/vm.hpp>
#include <set>
#include <string>
#include <string_view>

#include "api/session.hpp"

namespace {

using namespace qshim;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using Socket = asio::local::stream_protocol::socket;
using Json = nlohmann::json;

[[noreturn]] void broken(const char* what, std::string_view detail) {
    std::fprintf(stderr, "api-fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

// Small, but with a device of each class the endpoints name, and free hotplug ports.
constexpr const char* vm_yaml = R"(name: fuzz
memory: {size: 64Mi}
disks:
  - {name: root, path: /fuzz/root.img, format: raw}
  - {name: data, path: /fuzz/data.qcow2, format: qcow2, bus: scsi}
interfaces:
  - {name: net0, backend: {type: user}}
hotplug: {disks: 2, interfaces: 1}
)";

struct Planned {
    spec::VmSpec spec;
    topology::Topology topology;
};

const Planned& planned() {
    static const Planned p = [] {
        auto s = spec::parse_spec(vm_yaml, "/fuzz/vm.yaml");
        if (!s) {
            std::string why = s.error().what();
            for (const auto& d : s.error().diagnostics) why += "\n" + to_string(d);
            broken("the fixed spec does not load", why);
        }
        auto t = topology::plan(*s);
        if (!t) broken("the fixed spec does not plan", t.error().what());
        return Planned{std::move(*s), std::move(*t)};
    }();
    return p;
}

// docs/api.md, "Errors": the codes each status may carry.
const std::map<unsigned, std::set<std::string>>& documented_errors() {
    static const std::map<unsigned, std::set<std::string>> codes = {
        {400, {"invalid_spec", "bad_request"}},
        {403, {"forbidden"}},
        {404, {"not_found", "qmp"}},
        {405, {"method_not_allowed"}},
        {409, {"conflict", "topology"}},
        {413, {"payload_too_large"}},
        {431, {"headers_too_large"}},
        {500, {"qmp", "launch", "io"}},  // "internal" is a bug
        {501, {"unsupported", "qmp"}},
        {503, {"state", "interrupted", "protocol", "busy"}},
        {504, {"timeout"}},
    };
    return codes;
}

using Response = http::response<http::string_body>;

void check_json_response(const Response& res, std::string_view all) {
    const unsigned status = res.result_int();
    if (res[http::field::content_type] != "application/json")
        broken("a response that is not application/json", all);
    Json body = Json::parse(res.body(), nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object()) broken("a body that is not a JSON object", all);
    if (status < 400) {
        if (status != 200 && status != 201 && status != 202) broken("an unexpected status", all);
        if (body.contains("error")) broken("a success with an error body", all);
        return;
    }
    auto codes = documented_errors().find(status);
    if (codes == documented_errors().end()) broken("an undocumented error status", all);
    auto error = body.find("error");
    if (error == body.end() || !error->is_object()) broken("an error without an error body", all);
    auto code = error->find("code");
    auto message = error->find("message");
    if (code == error->end() || !code->is_string() || message == error->end() ||
        !message->is_string() || message->get_ref<const std::string&>().empty())
        broken("an error body without code and message", all);
    if (!codes->second.count(code->get<std::string>()))
        broken("an error code not documented for its status (or internal)", all);
    if (status == 405 && res[http::field::allow].empty()) broken("a 405 without Allow", all);
}

void check_responses(std::string_view all) {
    std::string_view rest = all;
    bool ended = false;  // a response that ends the connection was seen
    while (!rest.empty()) {
        if (ended) broken("bytes after the response that ended the connection", all);
        http::response_parser<http::string_body> parser;
        parser.eager(true);
        parser.body_limit(boost::none);
        boost::system::error_code ec;
        std::size_t used = 0;
        while (!parser.is_done()) {
            std::size_t n = parser.put(asio::buffer(rest.data() + used, rest.size() - used), ec);
            used += n;
            if (ec == http::error::need_more) ec = {};
            if (ec) break;
            if (n == 0 || used == rest.size()) {
                if (!parser.is_done()) parser.put_eof(ec);  // there is no more
                break;
            }
        }
        const bool streamed = parser.is_header_done() && parser.get().result_int() == 200 &&
                              parser.get()[http::field::content_type] == "application/x-ndjson";
        if (!parser.is_done() || ec) {
            // The event stream runs until the client leaves, which it just did.
            if (streamed && (!ec || ec == http::error::partial_message)) return;
            broken("bytes that are not a complete HTTP response", all);
        }
        const Response& res = parser.get();
        if (res.version() != 10 && res.version() != 11)
            broken("a response in an HTTP version other than 1.0 and 1.1", all);
        rest.remove_prefix(used);
        if (res.result_int() == 100) {
            if (!res.body().empty()) broken("a 100 Continue with a body", all);
            continue;
        }
        if (streamed || !res.keep_alive()) ended = true;
        if (!streamed) check_json_response(res, all);
    }
}

asio::awaitable<void> send(Socket& client, std::string_view input) {
    auto token = asio::as_tuple(asio::use_awaitable);
    // The server may close first (a bad request ends the connection): not an error here.
    co_await asio::async_write(client, asio::buffer(input.data(), input.size()), token);
    boost::system::error_code ignored;
    client.shutdown(asio::socket_base::shutdown_send, ignored);
}

asio::awaitable<void> receive(Socket& client, std::string& out) {
    auto token = asio::as_tuple(asio::use_awaitable);
    char buffer[16 * 1024];
    for (;;) {
        auto [ec, n] = co_await client.async_read_some(asio::buffer(buffer), token);
        out.append(buffer, n);
        if (ec) co_return;
    }
}

void rethrow_as_crash(std::exception_ptr e) {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        broken("an exception escaped serving the connection", x.what());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string received;
    {
        asio::io_context io;
        Socket server(io), client(io);
        asio::local::connect_pair(server, client);
        Vm vm(io.get_executor(), planned().spec, planned().topology, VmOptions{});
        ApiOptions options;
        options.read_timeout = std::chrono::seconds(2);
        auto ctx = std::make_shared<api::ServerContext>(vm, options);
        asio::co_spawn(io, api::serve_connection(ctx, std::move(server)), rethrow_as_crash);
        asio::co_spawn(io, send(client, input), rethrow_as_crash);
        asio::co_spawn(io, receive(client, received), rethrow_as_crash);
        // Everything is local and the client leaves at once: far below the read timeout.
        io.run_for(std::chrono::seconds(10));
        if (!io.stopped()) broken("the connection did not end", input);
    }
    // For a person replaying one input: what the server answered.
    static const bool verbose = std::getenv("QSHIM_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "%s\n", received.c_str());
    check_responses(received);
    return 0;
}
