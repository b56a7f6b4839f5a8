// A scripted fake QMP server on a socketpair, plus the harness that runs it against a Client.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <qshim/qmp.hpp>
#include <string>
#include <vector>

namespace qshim::test {

using qmp::Duration;
using qmp::Json;

// One thing the server does. Built with the functions in `steps` below.
struct Step {
    enum class Kind {
        send,         // write `text` as is (greeting, events, garbage, hand-made replies)
        expect,       // read a command named `command` and answer it
        hold,         // read `count` commands named `command` and keep them unanswered
        reply_held,   // answer every held command, echoing its arguments as "return"
        close,        // close the connection
        delay,        // wait `delay`
        wait_closed,  // read and discard until the client closes
    };
    Kind kind = Kind::send;
    std::string text;
    std::string command;
    std::optional<Json> result;  // expect: the "return" value; absent with `error` set
    std::string error_class, error_desc;
    Duration delay{0};  // expect: before replying; delay: how long
    int count = 1;
    bool reversed = false;
    std::string label;  // for messages: what the step was
};
using Script = std::vector<Step>;

namespace steps {
Step greeting();
Step expect(std::string command, Json result = Json::object(), Duration delay = Duration(0));
Step expect_error(std::string command, std::string error_class, std::string desc);
Step hold(std::string command, int count = 1);
Step reply_held(bool reversed = false);
Step event(std::string name, Json data = Json::object());
Step send(std::string text, std::string label = "raw bytes");
Step garbage();
Step truncated_and_close();  // half a reply, then close
Step close();
Step unknown_id_reply();
Step error_without_id();
Step delay(Duration d);
Step wait_closed();
}  // namespace steps

// The greeting and the capabilities negotiation every session starts with.
Script handshake();
Script operator+(Script a, const Script& b);

// "Fail at step N": the step is replaced by a fault, the way the client meets a broken peer.
enum class Fault { close, garbage, truncate };
const char* to_string(Fault fault);
Script with_fault(Script script, std::size_t index, Fault fault);

class FakeServer {
  public:
    FakeServer(boost::asio::io_context& io, int fd, Script script);
    ~FakeServer();

    boost::asio::awaitable<void> run();
    bool finished() const { return finished_; }
    // Script mismatches (a command other than the one expected); empty when all went to plan.
    const std::vector<std::string>& failures() const { return failures_; }
    const std::vector<Json>& commands() const { return commands_; }
    // Descriptors that arrived with SCM_RIGHTS, owned by the server.
    const std::vector<int>& received_fds() const { return fds_; }

  private:
    boost::asio::awaitable<bool> perform(const Step& step);
    boost::asio::awaitable<std::optional<Json>> read_command();
    boost::asio::awaitable<bool> fill();
    boost::asio::awaitable<bool> write(std::string text);
    boost::asio::awaitable<bool> reply(const Json& command, const Step& step);

    boost::asio::local::stream_protocol::socket socket_;
    Script script_;
    std::string inbuf_;
    std::vector<Json> held_;
    std::vector<Json> commands_;
    std::vector<std::string> failures_;
    std::vector<int> fds_;
    bool finished_ = false;
};

// Counts down finished concurrent calls; a test coroutine waits until all are in.
class Latch {
  public:
    Latch(const boost::asio::any_io_executor& ex, int count);
    void count_down();
    boost::asio::awaitable<void> wait();

  private:
    boost::asio::steady_timer signal_;
    int count_;
};

qmp::ClientOptions test_options();

// Catch's assertion macros expand their argument more than once, so a co_await must never be
// inside one: await first, then check with this.
template <typename T>
void require_ok(const Result<T>& r) {
    INFO((r.ok() ? std::string("ok") : r.error().what()));
    REQUIRE(r.ok());
}

// An EventFilter without designated initializers, which g++ 12 flags for the unnamed member.
inline qmp::EventFilter filter(std::vector<std::string> names,
                               std::function<bool(const qmp::Event&)> predicate = {}) {
    qmp::EventFilter f;
    f.names = std::move(names);
    f.predicate = std::move(predicate);
    return f;
}

// A client and a fake server on one io_context, joined by a socketpair.
class Harness {
  public:
    explicit Harness(Script script, qmp::ClientOptions options = test_options());
    ~Harness();

    boost::asio::io_context io;
    FakeServer server;
    qmp::Client client;

    // Hands the client its end of the socketpair (once).
    boost::asio::awaitable<Result<Json>> connect();

    // Runs `driver` and the server; closes the client when the driver is done. True when both
    // finished and no work is left within `bound`: nothing hung.
    template <typename Driver>
    bool run(Driver&& driver, Duration bound = Duration(20'000)) {
        start(driver());
        return finish(bound);
    }

  private:
    Harness(std::array<int, 2> fds, Script script, qmp::ClientOptions options);
    void start(boost::asio::awaitable<void> driver);
    bool finish(Duration bound);

    int client_fd_ = -1;
    bool driver_done_ = false;
    std::exception_ptr driver_error_;
};

}  // namespace qshim::test
