// The QMP client against the scripted fake server: routing, errors, timeouts, events, failures.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>

#include "qmp_fake_server.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace s = qshim::test::steps;

namespace {

// Shorthand for the outcome of a call, kept until the io_context has stopped.
struct Outcome {
    std::optional<Result<Json>> r;
    bool ok() const { return r && r->ok(); }
    Errc code() const { return r && !r->ok() ? r->error().code : Errc::internal; }
};

}  // namespace

TEST_CASE("connect reads the greeting and negotiates capabilities", "[qmp]") {
    Harness h(handshake() + Script{s::wait_closed()});
    Outcome connected;
    qmp::State during = qmp::State::idle;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        CHECK(h.client.state() == qmp::State::idle);
        connected.r = co_await h.connect();
        during = h.client.state();
    }));
    REQUIRE(connected.ok());
    CHECK((*connected.r)->at("version").at("qemu").at("major") == 7);  // the fake's greeting
    CHECK(during == qmp::State::running);
    CHECK(h.client.state() == qmp::State::disconnected);
    REQUIRE(h.server.commands().size() == 1);
    CHECK(h.server.commands()[0]["execute"] == "qmp_capabilities");
    CHECK(h.server.commands()[0]["id"].get<std::string>().rfind("qshim-", 0) == 0);
    CHECK(h.server.failures().empty());
}

TEST_CASE("a peer that never greets times the connect out", "[qmp]") {
    auto options = test_options();
    options.connect_timeout = 50ms;
    Harness h({s::wait_closed()}, options);
    Outcome connected;
    REQUIRE(h.run([&]() -> asio::awaitable<void> { connected.r = co_await h.connect(); }));
    CHECK(connected.code() == Errc::timeout);
    CHECK(h.client.state() == qmp::State::disconnected);
}

TEST_CASE("calls in the wrong state fail naming both states", "[qmp]") {
    Harness h(handshake() + Script{s::wait_closed()});
    Outcome early, twice, late;
    Result<qmp::Event> after_close = make_error(Errc::internal, "not run");
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        early.r = co_await h.client.execute("query-status");
        auto first = co_await h.connect();
        CHECK(first.ok());
        twice.r = co_await h.client.connect_path("/nonexistent");
        h.client.close();
        late.r = co_await h.client.execute("query-status");
        after_close = co_await h.client.listen({})->next(1s);
    }));
    REQUIRE(early.code() == Errc::state);
    CHECK_THAT(early.r->error().message, Catch::Contains("idle") && Catch::Contains("running"));
    REQUIRE(twice.code() == Errc::state);
    CHECK_THAT(twice.r->error().message, Catch::Contains("running") && Catch::Contains("idle"));
    REQUIRE(late.code() == Errc::state);
    CHECK_THAT(late.r->error().message, Catch::Contains("disconnected"));
    CHECK(!after_close.ok());
    CHECK(after_close.error().code == Errc::interrupted);
}

TEST_CASE("50 commands in flight answered in reverse order all resolve", "[qmp]") {
    constexpr int n = 50;
    Harness h(handshake() +
              Script{s::hold("echo", n), s::reply_held(/*reversed=*/true), s::wait_closed()});
    std::vector<Outcome> results(n);
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        Latch latch(h.io.get_executor(), n);
        for (int i = 0; i < n; ++i)
            asio::co_spawn(
                h.io,
                [&, i]() -> asio::awaitable<void> {
                    Json args = {{"n", i}};  // g++ 12 rejects a braced Json inside co_await
                    results[i].r = co_await h.client.execute("echo", args);
                    latch.count_down();
                },
                asio::detached);
        co_await latch.wait();
    }));
    // The server read all 50 before answering any: they really were in flight together.
    CHECK(h.server.failures().empty());
    for (int i = 0; i < n; ++i) {
        REQUIRE(results[i].ok());
        CHECK((*results[i].r)->at("n") == i);
    }
    CHECK(h.client.stats().commands_sent == n + 1);
}

TEST_CASE("a QMP error keeps its class, description and command", "[qmp]") {
    Harness h(handshake() +
              Script{s::expect_error("device_del", "DeviceNotFound", "Device 'disk9' not found"),
                     s::expect("query-status", {{"running", true}}), s::wait_closed()});
    Outcome failed, after;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        Json args = {{"id", "disk9"}};  // g++ 12 rejects a braced Json inside co_await
        failed.r = co_await h.client.execute("device_del", args);
        after.r = co_await h.client.execute("query-status");
    }));
    REQUIRE(failed.code() == Errc::qmp);
    const Error& e = failed.r->error();
    CHECK(e.qmp_class == "DeviceNotFound");
    CHECK(e.message == "Device 'disk9' not found");
    CHECK_THAT(e.context, Catch::Contains("device_del"));
    CHECK(after.ok());  // a QMP error is an answer, not a broken connection
    CHECK(h.server.commands()[1]["arguments"] == Json{{"id", "disk9"}});
}

TEST_CASE("a timed-out command's late reply is counted and dropped", "[qmp]") {
    // The server holds "slow" until "ping" arrives, which the client only sends after the timeout.
    Harness h(handshake() +
              Script{s::hold("slow"), s::hold("ping"), s::reply_held(), s::wait_closed()});
    Outcome slow, ping;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        slow.r = co_await h.client.execute("slow", Json::object(), 50ms);
        ping.r = co_await h.client.execute("ping");
    }));
    REQUIRE(slow.code() == Errc::timeout);
    CHECK_THAT(slow.r->error().context, Catch::Contains("slow"));
    CHECK(ping.ok());
    CHECK(h.client.stats().late_replies == 1);
    CHECK(h.client.stats().unknown_replies == 0);
}

TEST_CASE("a reply with an id never sent is counted and dropped", "[qmp]") {
    Harness h(handshake() +
              Script{s::hold("ping"), s::unknown_id_reply(), s::reply_held(), s::wait_closed()});
    Outcome ping;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        ping.r = co_await h.client.execute("ping");
    }));
    CHECK(ping.ok());
    CHECK(h.client.stats().unknown_replies == 1);
    CHECK(h.client.stats().late_replies == 0);
}

TEST_CASE("events reach every listener whose filter matches", "[qmp]") {
    Harness h(handshake() + Script{s::expect("stop"), s::event("STOP"), s::event("RESUME"),
                                   s::event("BLOCK_JOB_COMPLETED", {{"device", "d1"}}),
                                   s::event("BLOCK_JOB_COMPLETED", {{"device", "d2"}}),
                                   s::expect("ping"), s::wait_closed()});
    std::shared_ptr<qmp::EventListener> all, stops, d2;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        all = h.client.listen({});
        stops = h.client.listen(filter({"STOP"}));
        d2 = h.client.listen(filter({"BLOCK_JOB_COMPLETED"}, [](const qmp::Event& e) {
            return e.data.value("device", "") == "d2";
        }));
        auto gone = h.client.listen({});  // dropped at once: must be pruned, not fed forever
        gone.reset();
        require_ok(co_await h.connect());
        // Subscribed before the command: STOP, sent right after the reply, is not lost.
        require_ok(co_await h.client.execute("stop"));
        auto stop = co_await stops->next(5s);
        REQUIRE(stop.ok());
        CHECK(stop->name == "STOP");
        CHECK(stop->timestamp.at("seconds") == 1);
        // Events and replies share one ordered stream: after ping's reply every event is queued.
        require_ok(co_await h.client.execute("ping"));
    }));
    CHECK(all->size() == 4);
    CHECK(stops->size() == 0);
    REQUIRE(d2->size() == 1);
    CHECK(d2->try_next()->data.at("device") == "d2");
    CHECK(all->dropped() == 0);
}

TEST_CASE("wait_event skips events that do not match", "[qmp]") {
    Harness h(handshake() +
              Script{s::expect("device_del"),
                     s::event("DEVICE_DELETED", {{"path", "/x/virtio-backend"}}),
                     s::event("DEVICE_DELETED", {{"device", "disk1"}, {"path", "/x"}}),
                     s::wait_closed()});
    Result<qmp::Event> deleted = make_error(Errc::internal, "not run");
    Result<qmp::Event> nothing = make_error(Errc::internal, "not run");
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        auto listener = h.client.listen(filter({"DEVICE_DELETED"}));
        require_ok(co_await h.connect());
        Json args = {{"id", "disk1"}};  // g++ 12 rejects a braced Json inside co_await
        require_ok(co_await h.client.execute("device_del", args));
        auto is_disk1 = [](const qmp::Event& e) { return e.data.value("device", "") == "disk1"; };
        deleted = co_await qmp::wait_event(*listener, is_disk1, 5s);
        nothing = co_await qmp::wait_event(*listener, is_disk1, 20ms);
    }));
    REQUIRE(deleted.ok());
    CHECK(deleted->data.at("path") == "/x");
    REQUIRE(!nothing.ok());
    CHECK(nothing.error().code == Errc::timeout);
}

TEST_CASE("a cancelled wait for an event ends at once", "[qmp]") {
    // STOP comes only after ping, which is sent after the race: the losing wait cannot eat it.
    Harness h(handshake() +
              Script{s::expect("stop"), s::expect("ping"), s::event("STOP"), s::wait_closed()});
    Result<qmp::Event> stop = make_error(Errc::internal, "not run");
    auto started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration raced{};
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        using namespace asio::experimental::awaitable_operators;
        auto stops = h.client.listen(filter({"STOP"}));
        require_ok(co_await h.connect());
        // The command finishing first cancels the 10 s wait, which must not linger.
        auto both = co_await (h.client.execute("stop") || stops->next(10s));
        raced = std::chrono::steady_clock::now() - started;
        CHECK(both.index() == 0);
        require_ok(co_await h.client.execute("ping"));
        stop = co_await stops->next(10s);
    }));
    CHECK(raced < 5s);
    REQUIRE(stop.ok());
    CHECK(stop->name == "STOP");
}

TEST_CASE("a full listener drops its oldest events and counts them", "[qmp]") {
    Script script = handshake();
    for (int i = 1; i <= 5; ++i) script.push_back(s::event("E", {{"n", i}}));
    script.push_back(s::expect("ping"));
    script.push_back(s::wait_closed());
    Harness h(script);
    std::shared_ptr<qmp::EventListener> small;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        small = h.client.listen({}, 2);
        require_ok(co_await h.connect());
        require_ok(co_await h.client.execute("ping"));
    }));
    CHECK(small->size() == 2);
    CHECK(small->dropped() == 3);
    CHECK(small->try_next()->data.at("n") == 4);
    CHECK(small->try_next()->data.at("n") == 5);
    CHECK(!small->try_next());
}

TEST_CASE("the peer closing fails every pending call and waiting listener", "[qmp]") {
    Harness h(handshake() + Script{s::hold("work", 5), s::close()});
    std::vector<Outcome> results(5);
    Result<qmp::Event> waited = make_error(Errc::internal, "not run");
    Outcome after;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        auto listener = h.client.listen({});
        require_ok(co_await h.connect());
        Latch latch(h.io.get_executor(), 6);
        for (int i = 0; i < 5; ++i)
            asio::co_spawn(
                h.io,
                [&, i]() -> asio::awaitable<void> {
                    results[i].r = co_await h.client.execute("work");
                    latch.count_down();
                },
                asio::detached);
        asio::co_spawn(
            h.io,
            [&]() -> asio::awaitable<void> {
                waited = co_await listener->next(10s);
                latch.count_down();
            },
            asio::detached);
        co_await latch.wait();
        after.r = co_await h.client.execute("work");
    }));
    for (auto& r : results) CHECK(r.code() == Errc::interrupted);
    REQUIRE(!waited.ok());
    CHECK(waited.error().code == Errc::interrupted);
    CHECK(after.code() == Errc::state);
}

TEST_CASE("close() fails every pending call with interrupted", "[qmp]") {
    Harness h(handshake() + Script{s::hold("work", 3), s::event("HELD"), s::wait_closed()});
    std::vector<Outcome> results(3);
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        auto held = h.client.listen(filter({"HELD"}));
        require_ok(co_await h.connect());
        Latch latch(h.io.get_executor(), 3);
        for (int i = 0; i < 3; ++i)
            asio::co_spawn(
                h.io,
                [&, i]() -> asio::awaitable<void> {
                    results[i].r = co_await h.client.execute("work");
                    latch.count_down();
                },
                asio::detached);
        require_ok(co_await held->next(10s));  // the server has all three
        h.client.close();
        co_await latch.wait();
    }));
    for (auto& r : results) CHECK(r.code() == Errc::interrupted);
}

TEST_CASE("a broken peer is a protocol failure that tears the connection down", "[qmp]") {
    struct Case {
        const char* name;
        Step step;
        const char* says;  // part of the error message: the failure is the one we meant
    };
    auto big = Json{{"return", std::string(5000, 'x')}, {"id", "qshim-3"}}.dump() + "\r\n";
    // Deeper than QEMU itself would nest: refused before it can exhaust the stack.
    auto deep = "{\"return\": " + std::string(1100, '[') + std::string(1100, ']') +
                ", \"id\": \"qshim-3\"}\r\n";
    auto c = GENERATE_COPY(values<Case>({
        {"error without id", s::error_without_id(), "without id"},
        {"garbage", s::garbage(), "not JSON"},
        {"JSON that is not an object", s::send("[1, 2, 3]\r\n"), "not a JSON object"},
        {"a message that is neither reply nor event", s::send("{\"hello\": 1}\r\n"), "neither"},
        {"a truncated line, then close", s::truncated_and_close(), "middle of a message"},
        {"a line over max_message_bytes", s::send(big), "larger than 4096"},
        {"JSON nested 1100 deep", s::send(deep), "deeper than"},
    }));
    INFO(c.name);
    auto options = test_options();
    options.max_message_bytes = 4096;
    Harness h(handshake() + Script{s::expect("small", std::string(4000, 'y')), s::hold("x"), c.step,
                                   s::wait_closed()},
              options);
    Outcome small, x;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        small.r = co_await h.client.execute("small");
        x.r = co_await h.client.execute("x");
    }));
    CHECK(small.ok());  // under the bound
    REQUIRE(x.code() == Errc::protocol);
    CHECK_THAT(x.r->error().message, Catch::Contains(c.says));
    CHECK_THAT(x.r->error().context, Catch::Contains("executing x"));
    CHECK(h.client.state() == qmp::State::disconnected);
}

TEST_CASE("execute_with_fd passes a descriptor to the same file", "[qmp]") {
    char path[] = "/tmp/qshim-qmp-fd-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    Harness h(handshake() + Script{s::expect("getfd"), s::wait_closed()});
    Outcome got;
    REQUIRE(h.run([&]() -> asio::awaitable<void> {
        require_ok(co_await h.connect());
        Json args = {{"fdname", "disk0"}};  // g++ 12 rejects a braced Json inside co_await
        got.r = co_await h.client.execute_with_fd("getfd", args, fd);
    }));
    CHECK(got.ok());
    REQUIRE(h.server.received_fds().size() == 1);
    struct stat mine {
    }, theirs{};
    REQUIRE(::fstat(fd, &mine) == 0);
    REQUIRE(::fstat(h.server.received_fds()[0], &theirs) == 0);
    CHECK(mine.st_ino == theirs.st_ino);
    CHECK(mine.st_dev == theirs.st_dev);
    CHECK(h.server.received_fds()[0] != fd);
    ::close(fd);
}

TEST_CASE("connect_path connects over a unix socket path, or fails with io", "[qmp]") {
    asio::io_context io;
    std::string path = fmt::format("/tmp/qshim-qmp-test-{}.sock", ::getpid());
    ::unlink(path.c_str());
    asio::local::stream_protocol::acceptor acceptor(io,
                                                    asio::local::stream_protocol::endpoint(path));
    std::optional<FakeServer> server;
    qmp::Client client(io.get_executor(), test_options()),
        missing(io.get_executor(), test_options());
    Outcome connected, status, refused;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto [ec, peer] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
            REQUIRE(!ec);
            server.emplace(io, peer.release(),
                           handshake() + Script{s::expect("query-status"), s::wait_closed()});
            co_await server->run();
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            refused.r = co_await missing.connect_path(path + ".missing");
            connected.r = co_await client.connect_path(path);
            status.r = co_await client.execute("query-status");
            client.close();
        },
        asio::detached);
    io.run_for(20s);
    ::unlink(path.c_str());
    CHECK(io.stopped());
    CHECK(refused.code() == Errc::io);
    CHECK(missing.state() == qmp::State::disconnected);
    CHECK(connected.ok());
    CHECK(status.ok());
}
