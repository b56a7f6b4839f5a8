// Every scenario replayed with a fault at step 0, 1, 2, ...: the client never hangs or crashes.
#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>
#include <functional>

#include "qmp_fake_server.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace s = qshim::test::steps;

namespace {

// What each call of a driver ended with, in call order.
struct Log {
    std::vector<std::pair<std::string, std::optional<Errc>>> calls;
    template <typename T>
    void add(std::string what, const Result<T>& r) {
        calls.emplace_back(std::move(what),
                           r.ok() ? std::nullopt : std::optional<Errc>(r.error().code));
    }
    bool all_ok() const {
        return std::all_of(calls.begin(), calls.end(), [](const auto& c) { return !c.second; });
    }
    std::string describe() const {
        std::string out;
        for (const auto& [what, code] : calls)
            out += fmt::format("{}={} ", what, code ? to_string(*code) : "ok");
        return out;
    }
};

struct Scenario {
    std::string name;
    Script script;
    // Returns false when the scenario could not go on (a failure it met ends it early).
    std::function<asio::awaitable<void>(Harness&, Log&)> drive;
};

asio::awaitable<bool> connect(Harness& h, Log& log) {
    auto r = co_await h.connect();
    log.add("connect", r);
    co_return r.ok();
}

std::vector<Scenario> scenarios() {
    std::vector<Scenario> out;
    out.push_back({"a command with a delayed reply",
                   handshake() + Script{s::expect("query-status", {{"running", false}}, 5ms),
                                        s::wait_closed()},
                   [](Harness& h, Log& log) -> asio::awaitable<void> {
                       if (!co_await connect(h, log)) co_return;
                       log.add("query-status", co_await h.client.execute("query-status"));
                   }});
    out.push_back({"events around stop and cont",
                   handshake() + Script{s::expect("stop"), s::event("STOP"), s::expect("cont"),
                                        s::event("RESUME"), s::wait_closed()},
                   [](Harness& h, Log& log) -> asio::awaitable<void> {
                       auto listener = h.client.listen(filter({"STOP", "RESUME"}));
                       if (!co_await connect(h, log)) co_return;
                       log.add("stop", co_await h.client.execute("stop"));
                       log.add("STOP", co_await listener->next(10s));
                       log.add("cont", co_await h.client.execute("cont"));
                       log.add("RESUME", co_await listener->next(10s));
                   }});
    out.push_back(
        {"commands in flight answered out of order",
         handshake() + Script{s::hold("echo", 4), s::reply_held(true), s::wait_closed()},
         [](Harness& h, Log& log) -> asio::awaitable<void> {
             if (!co_await connect(h, log)) co_return;
             Latch latch(h.io.get_executor(), 4);
             std::vector<Result<Json>> results(4, make_error(Errc::internal, "never completed"));
             for (int i = 0; i < 4; ++i)
                 asio::co_spawn(
                     h.io,
                     [&, i]() -> asio::awaitable<void> {
                         Json args = {{"n", i}};  // g++ 12 rejects a braced Json inside co_await
                         results[i] = co_await h.client.execute("echo", args);
                         latch.count_down();
                     },
                     asio::detached);
             co_await latch.wait();
             for (int i = 0; i < 4; ++i) log.add(fmt::format("echo{}", i), results[i]);
         }});
    out.push_back(
        {"fd passing, a QMP error, an unknown id and a late reply",
         handshake() + Script{s::expect("getfd"),
                              s::expect_error("closefd", "GenericError", "no such fd"),
                              s::unknown_id_reply(), s::hold("slow"), s::hold("ping"),
                              s::reply_held(), s::wait_closed()},
         [](Harness& h, Log& log) -> asio::awaitable<void> {
             int pipe_fds[2];
             if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
             if (co_await connect(h, log)) {
                 Json args = {{"fdname", "p"}};  // g++ 12 rejects a braced Json inside co_await
                 log.add("getfd", co_await h.client.execute_with_fd("getfd", args, pipe_fds[0]));
                 auto closefd = co_await h.client.execute("closefd", args);
                 // The QMP error is the expected answer here; anything else is a failure.
                 if (!closefd.ok() && closefd.error().code == Errc::qmp) closefd = Json::object();
                 log.add("closefd", closefd);
                 auto slow = co_await h.client.execute("slow", Json::object(), 20ms);
                 if (!slow.ok() && slow.error().code == Errc::timeout) slow = Json::object();
                 log.add("slow", slow);
                 log.add("ping", co_await h.client.execute("ping"));
             }
             ::close(pipe_fds[0]);
             ::close(pipe_fds[1]);
         }});
    return out;
}

}  // namespace

TEST_CASE("the fault-free scenarios succeed", "[qmp][faults]") {
    for (auto& scenario : scenarios()) {
        INFO(scenario.name);
        Harness h(scenario.script);
        Log log;
        REQUIRE(h.run([&]() { return scenario.drive(h, log); }));
        INFO(log.describe());
        CHECK(log.all_ok());
        CHECK(h.server.failures().empty());
    }
}

TEST_CASE("a fault at any step ends every call, never hangs", "[qmp][faults]") {
    int runs = 0;
    for (auto& scenario : scenarios()) {
        for (Fault fault : {Fault::close, Fault::garbage, Fault::truncate}) {
            // The last step only waits for the client to leave: a fault there may go unseen.
            for (std::size_t n = 0; n + 1 < scenario.script.size(); ++n) {
                INFO(fmt::format("{}: {} replacing step {} ({})", scenario.name, to_string(fault),
                                 n, scenario.script[n].label));
                Harness h(with_fault(scenario.script, n, fault));
                Log log;
                // run() is true only if the driver and server finished and nothing was left
                // waiting: every await completed, so no call hung.
                REQUIRE(h.run([&]() { return scenario.drive(h, log); }, 20'000ms));
                INFO(log.describe());
                REQUIRE(!log.calls.empty());
                CHECK(!log.all_ok());  // every step before the last is one the client waits on
                for (const auto& [what, code] : log.calls) {
                    if (!code) continue;
                    // A broken peer shows as a closed connection, a protocol failure, or a call
                    // refused afterwards; never a timeout, an internal error, or a fake success.
                    CHECK((*code == Errc::interrupted || *code == Errc::protocol ||
                           *code == Errc::state));
                }
                CHECK(h.client.state() == qmp::State::disconnected);
                ++runs;
            }
        }
    }
    CHECK(runs > 40);
}
