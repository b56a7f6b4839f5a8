// The API session against a real Vm and the fake QEMU: statuses by error class, odd paths.
#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <fstream>

#include "api/session.hpp"
#include "vm_harness.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace s = qshim::test::steps;
using asio::local::stream_protocol;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct Answer {
    int status = 0;
    Json body;
};

// One HTTP/1.1 exchange on a kept-alive connection, the bytes written as given.
asio::awaitable<Answer> exchange(stream_protocol::socket& socket, beast::flat_buffer& buffer,
                                 std::string raw) {
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(raw), use_tuple);
    Answer a;
    if (wec) co_return a;
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(socket, buffer, res, use_tuple);
    if (rec) co_return a;
    a.status = static_cast<int>(res.result_int());
    a.body = Json::parse(res.body(), nullptr, false);
    co_return a;
}

std::string post(const std::string& target, const std::string& body) {
    return fmt::format(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
        "{}\r\n\r\n{}",
        target, body.size(), body);
}

struct Fixture {
    asio::io_context io;
    FakeQemu qemu{io};
    PlannedVm planned = plan_vm("name: api\n", qemu.dir.path.string());
    std::unique_ptr<Vm> vm;
    stream_protocol::socket client{io};
    beast::flat_buffer buffer;

    explicit Fixture(std::chrono::milliseconds command_timeout = 10s) {
        make_image(qemu.dir.path / "one.raw");
        auto options = qemu.options();
        options.command_timeout = command_timeout;
        vm = std::make_unique<Vm>(io.get_executor(), planned.spec, planned.topology, options);
        stream_protocol::socket server(io);
        asio::local::connect_pair(client, server);
        auto ctx = std::make_shared<api::ServerContext>(*vm, ApiOptions{});
        asio::co_spawn(io, api::serve_connection(ctx, std::move(server)), asio::detached);
    }
    void serve(Script script) {
        asio::co_spawn(io, qemu.serve(boot(planned.topology) + script + graceful_stop()),
                       asio::detached);
    }
    bool run(std::function<asio::awaitable<void>()> body) {
        VmExit exit;
        bool ran = run_test(io, [&]() -> asio::awaitable<void> {
            require_ok(co_await vm->start());
            co_await body();
            vm->request_stop();
            exit = co_await vm->wait_exit();
            client.close();
        }());
        return ran && exit.reason == VmExit::Reason::stopped;
    }
};

const std::string one_disk = R"({"name": "one", "path": "one.raw", "format": "raw"})";

}  // namespace

TEST_CASE("the API answers by error class: QEMU's refusal 400, no answer 504, a lost link 503") {
    Fixture f(300ms);
    f.qemu.set_env("QSHIM_FAKE_STAY", "1");
    f.serve({s::expect_error("blockdev-add", "GenericError", "Could not open 'one.raw'"),
             s::hold("blockdev-add"), s::expect("blockdev-del"), s::hold("blockdev-add"),
             s::garbage(), s::wait_closed()});
    bool ran = run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await f.vm->start());
        auto status =
            co_await exchange(f.client, f.buffer, "GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(status.status == 200);
        CHECK(status.body["state"] == "running");
        CHECK(status.body["diverged"] == Json::array());

        auto refused = co_await exchange(f.client, f.buffer, post("/v1/vm/disks", one_disk));
        CHECK(refused.status == 400);
        CHECK(refused.body["error"]["code"] == "invalid_spec");
        CHECK(refused.body["error"]["qmpClass"] == "GenericError");

        auto slow = co_await exchange(f.client, f.buffer, post("/v1/vm/disks", one_disk));
        CHECK(slow.status == 504);
        CHECK(slow.body["error"]["code"] == "timeout");

        // The connection breaks (garbage) while the command is in flight.
        auto lost = co_await exchange(f.client, f.buffer, post("/v1/vm/disks", one_disk));
        CHECK(lost.status == 503);
        CHECK(lost.body["error"]["code"] == "protocol");

        auto after = co_await exchange(f.client, f.buffer, post("/v1/vm/disks", one_disk));
        CHECK(after.status == 503);
        CHECK(after.body["error"]["code"] == "state");
        auto gone = co_await exchange(f.client, f.buffer, "GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(gone.body["state"] == "qmp-lost");
        f.vm->request_stop();
        auto exit = co_await f.vm->wait_exit();
        CHECK(exit.reason == VmExit::Reason::qmp_lost);
        f.client.close();
    }());
    CHECK(ran);
}

TEST_CASE("a request path with bytes 0x80-0xFF gets a JSON 404, and the connection lives on") {
    Fixture f;
    f.serve({});
    CHECK(f.run([&]() -> asio::awaitable<void> {
        auto odd = co_await exchange(f.client, f.buffer,
                                     "GET /v1/vm\xff\x80\xfe HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(odd.status == 404);
        CHECK(odd.body["error"]["code"] == "not_found");
        auto named = co_await exchange(f.client, f.buffer,
                                       "DELETE /v1/vm/disks/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(named.status == 404);
        auto still =
            co_await exchange(f.client, f.buffer, "GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(still.status == 200);
    }));
}
