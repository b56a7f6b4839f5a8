// The scripted fake QMP server: reads commands (and SCM_RIGHTS fds) and plays its script.
#include "qmp_fake_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <stdexcept>

namespace qshim::test {

namespace asio = boost::asio;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace steps {

Step greeting() {
    return send(
        R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"},)"
        R"( "capabilities": ["oob"]}})"
        "\r\n",
        "greeting");
}

Step make(Step::Kind kind, std::string label) {
    Step s;
    s.kind = kind;
    s.label = std::move(label);
    return s;
}

Step expect(std::string command, Json result, Duration delay) {
    Step s = make(Step::Kind::expect, "");
    s.command = std::move(command);
    s.result = std::move(result);
    s.delay = delay;
    s.label = "expect " + s.command;
    return s;
}

Step expect_error(std::string command, std::string error_class, std::string desc) {
    Step s = make(Step::Kind::expect, "");
    s.command = std::move(command);
    s.error_class = std::move(error_class);
    s.error_desc = std::move(desc);
    s.label = "expect " + s.command + " -> error";
    return s;
}

Step hold(std::string command, int count) {
    Step s = make(Step::Kind::hold, "");
    s.command = std::move(command);
    s.count = count;
    s.label = "hold " + s.command;
    return s;
}

Step reply_held(bool reversed) {
    Step s = make(Step::Kind::reply_held, "reply to held commands");
    s.reversed = reversed;
    return s;
}

Step event(std::string name, Json data) {
    Json e = {{"event", name},
              {"data", std::move(data)},
              {"timestamp", {{"seconds", 1}, {"microseconds", 2}}}};
    return send(e.dump() + "\r\n", "event " + name);
}

Step send(std::string text, std::string label) {
    Step s = make(Step::Kind::send, std::move(label));
    s.text = std::move(text);
    return s;
}

Step garbage() { return send("this is not JSON at all\r\n", "garbage"); }
Step truncated_and_close() {
    Step s = send(R"({"return": {}, "id": "qsh)", "truncated line, then close");
    s.kind = Step::Kind::close;  // close sends `text` first
    return s;
}
Step close() { return make(Step::Kind::close, "close"); }
Step unknown_id_reply() {
    return send("{\"return\": {}, \"id\": \"qshim-999999\"}\r\n", "reply with an unknown id");
}
Step error_without_id() {
    return send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n",
                "error without id");
}
Step delay(Duration d) {
    Step s = make(Step::Kind::delay, "delay");
    s.delay = d;
    return s;
}
Step wait_closed() { return make(Step::Kind::wait_closed, "wait until closed"); }

}  // namespace steps

Script handshake() { return {steps::greeting(), steps::expect("qmp_capabilities")}; }

Script operator+(Script a, const Script& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const char* to_string(Fault fault) {
    switch (fault) {
        case Fault::close:
            return "close";
        case Fault::garbage:
            return "garbage";
        case Fault::truncate:
            return "truncate";
    }
    return "?";
}

Script with_fault(Script script, std::size_t index, Fault fault) {
    if (index >= script.size()) return script;  // past the end: the fault-free run
    switch (fault) {
        case Fault::close:
            script[index] = steps::close();
            break;
        case Fault::garbage:
            script[index] = steps::garbage();
            break;
        case Fault::truncate:
            script[index] = steps::truncated_and_close();
            break;
    }
    return script;
}

FakeServer::FakeServer(asio::io_context& io, int fd, Script script)
    : socket_(io, asio::local::stream_protocol(), fd), script_(std::move(script)) {}

FakeServer::~FakeServer() {
    for (int fd : fds_) ::close(fd);
}

asio::awaitable<void> FakeServer::run() {
    for (const Step& step : script_)
        if (!co_await perform(step)) break;  // the client is gone: nothing more to play
    boost::system::error_code ignored;
    socket_.close(ignored);
    finished_ = true;
}

asio::awaitable<bool> FakeServer::perform(const Step& step) {
    switch (step.kind) {
        case Step::Kind::send:
            co_return co_await write(step.text);
        case Step::Kind::expect: {
            auto command = co_await read_command();
            if (!command) co_return false;
            if (command->value("execute", "") != step.command)
                failures_.push_back("expected " + step.command + ", got " + command->dump());
            if (step.delay.count() > 0) {
                asio::steady_timer timer(socket_.get_executor(), step.delay);
                co_await timer.async_wait(use_tuple);
            }
            co_return co_await reply(*command, step);
        }
        case Step::Kind::hold:
            for (int i = 0; i < step.count; ++i) {
                auto command = co_await read_command();
                if (!command) co_return false;
                if (command->value("execute", "") != step.command)
                    failures_.push_back("expected " + step.command + ", got " + command->dump());
                held_.push_back(std::move(*command));
            }
            co_return true;
        case Step::Kind::reply_held: {
            auto held = std::exchange(held_, {});
            if (step.reversed) std::reverse(held.begin(), held.end());
            std::string all;  // one write: the client sees the replies arrive together
            for (const auto& command : held)
                all += Json{{"return", command.value("arguments", Json::object())},
                            {"id", command["id"]}}
                           .dump() +
                       "\r\n";
            co_return co_await write(std::move(all));
        }
        case Step::Kind::close:
            if (!step.text.empty()) co_await write(step.text);
            co_return false;
        case Step::Kind::delay: {
            asio::steady_timer timer(socket_.get_executor(), step.delay);
            co_await timer.async_wait(use_tuple);
            co_return true;
        }
        case Step::Kind::wait_closed:
            while (co_await read_command()) {
            }
            co_return false;
    }
    co_return false;
}

asio::awaitable<bool> FakeServer::reply(const Json& command, const Step& step) {
    Json out = {{"id", command.value("id", Json())}};
    if (step.error_class.empty())
        out["return"] = step.result.value_or(Json::object());
    else
        out["error"] = {{"class", step.error_class}, {"desc", step.error_desc}};
    co_return co_await write(out.dump() + "\r\n");
}

asio::awaitable<std::optional<Json>> FakeServer::read_command() {
    for (;;) {
        auto nl = inbuf_.find('\n');
        if (nl != std::string::npos) {
            std::string line = inbuf_.substr(0, nl);
            inbuf_.erase(0, nl + 1);
            Json command = Json::parse(line, nullptr, false);
            if (command.is_discarded()) {
                failures_.push_back("the client sent a line that is not JSON: " + line);
                co_return std::nullopt;
            }
            commands_.push_back(command);
            co_return command;
        }
        if (!co_await fill()) co_return std::nullopt;
    }
}

asio::awaitable<bool> FakeServer::fill() {
    // recvmsg rather than read: the descriptors the client passes ride along with the bytes.
    for (;;) {
        auto [ec] = co_await socket_.async_wait(asio::socket_base::wait_read, use_tuple);
        if (ec) co_return false;
        char data[4096];
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
        iovec iov{data, sizeof data};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) co_return false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                fds_.push_back(fd);
            }
        }
        inbuf_.append(data, static_cast<std::size_t>(n));
        co_return true;
    }
}

asio::awaitable<bool> FakeServer::write(std::string text) {
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(text), use_tuple);
    co_return !ec;
}

Latch::Latch(const asio::any_io_executor& ex, int count)
    : signal_(ex, asio::steady_timer::time_point::max()), count_(count) {}

void Latch::count_down() {
    if (--count_ <= 0) signal_.cancel();
}

asio::awaitable<void> Latch::wait() {
    while (count_ > 0) co_await signal_.async_wait(use_tuple);
}

qmp::ClientOptions test_options() {
    qmp::ClientOptions options;
    // Long enough never to fire on a loaded 2-core machine: these tests wait for events, not time.
    options.command_timeout = Duration(10'000);
    options.connect_timeout = Duration(10'000);
    return options;
}

namespace {
std::array<int, 2> make_socketpair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    return {fds[0], fds[1]};
}
}  // namespace

Harness::Harness(Script script, qmp::ClientOptions options)
    : Harness(make_socketpair(), std::move(script), options) {}

Harness::Harness(std::array<int, 2> fds, Script script, qmp::ClientOptions options)
    : server(io, fds[1], std::move(script)),
      client(io.get_executor(), options),
      client_fd_(fds[0]) {}

Harness::~Harness() {
    if (client_fd_ >= 0) ::close(client_fd_);
}

asio::awaitable<Result<Json>> Harness::connect() {
    return client.connect_fd(std::exchange(client_fd_, -1));
}

void Harness::start(asio::awaitable<void> driver) {
    asio::co_spawn(io, server.run(), asio::detached);
    asio::co_spawn(io, std::move(driver), [this](std::exception_ptr e) {
        driver_done_ = true;
        driver_error_ = e;
        client.close();  // the server's wait_closed ends; nothing may be left running
    });
}

bool Harness::finish(Duration bound) {
    io.run_for(bound);
    if (driver_error_) std::rethrow_exception(driver_error_);
    return driver_done_ && server.finished() && io.stopped();
}

}  // namespace qshim::test
