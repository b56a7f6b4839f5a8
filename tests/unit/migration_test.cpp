// The migration's pure parts: its state machine, the convergence ladder, the handshake messages,
// addresses, and the JSON lines on a socket.
#include "launcher/migration.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <functional>

#include "launcher/lifecycle.hpp"
#include "launcher/migration_channel.hpp"
#include "launcher/migration_handshake.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using namespace std::chrono_literals;
using P = MigrationPhase;
using I = MigrationInput;

namespace {

std::optional<P> after(P from, std::initializer_list<I> inputs) {
    std::optional<P> p = from;
    for (I i : inputs) {
        if (!p) return p;
        p = next_migration_phase(*p, i);
    }
    return p;
}

Hello hello_with(std::vector<std::pair<std::string, std::string>> facts) {
    Hello h;
    h.vm = "vm";
    h.fingerprint.facts = std::move(facts);
    h.fingerprint.digest = topology::fingerprint_digest(h.fingerprint.facts);
    return h;
}

}  // namespace

TEST_CASE(
    "a migration goes connecting, handshake, active, switchover, loading, committed, "
    "completed") {
    CHECK(after(P::none, {I::start}) == P::connecting);
    CHECK(after(P::none, {I::start, I::connected, I::accepted}) == P::active);
    CHECK(after(P::none, {I::start, I::connected, I::accepted, I::qemu_switchover,
                          I::qemu_completed}) == P::loading);
    CHECK(after(P::none, {I::start, I::connected, I::accepted, I::qemu_switchover,
                          I::qemu_completed, I::loaded, I::confirmed}) == P::completed);
    // Post-copy completes without the pre-switchover pause.
    CHECK(after(P::active, {I::qemu_completed}) == P::loading);
    CHECK(next_migration_phase(P::completed, I::start) == std::nullopt);
}

TEST_CASE("any phase before the commit can fail or be cancelled; a new migration may follow") {
    for (P p : {P::connecting, P::handshake, P::active, P::switchover}) {
        CHECK(next_migration_phase(p, I::failed) == P::failed);
        CHECK(next_migration_phase(p, I::cancel) == P::cancelling);
        CHECK(migration_in_progress(p));
    }
    CHECK(after(P::active, {I::cancel, I::cancelled}) == P::cancelled);
    CHECK(after(P::active, {I::cancel, I::failed}) == P::failed);
    // QEMU sent everything before the cancel reached it: the target decides.
    CHECK(after(P::active, {I::cancel, I::qemu_completed}) == P::loading);
    CHECK(next_migration_phase(P::failed, I::start) == P::connecting);
    CHECK(next_migration_phase(P::cancelled, I::start) == P::connecting);
    CHECK_FALSE(migration_in_progress(P::failed));
    CHECK_FALSE(migration_in_progress(P::none));
}

TEST_CASE("once QEMU sent everything, a cancel is refused and a second start is too") {
    for (P p : {P::loading, P::committed}) {
        CHECK(next_migration_phase(p, I::cancel) == std::nullopt);
        CHECK(next_migration_phase(p, I::start) == std::nullopt);
        CHECK(migration_in_progress(p));
        CHECK(std::string(public_name(p)) == "confirming");
    }
    CHECK(next_migration_phase(P::active, I::start) == std::nullopt);
}

TEST_CASE("before the commit a failure gives the guest back; after it, only the target can") {
    // The target never said it loaded the VM: the guest is ours (resumed here).
    CHECK(next_migration_phase(P::loading, I::failed) == P::failed);
    // The connection broke after the commit: the target may run the guest. It stays paused.
    CHECK(next_migration_phase(P::committed, I::failed) == P::in_doubt);
    CHECK(std::string(public_name(P::in_doubt)) == "failed");
    CHECK_FALSE(migration_in_progress(P::in_doubt));
    // The target said plainly that it does not run it: the guest is ours again.
    CHECK(next_migration_phase(P::committed, I::declined) == P::failed);
    CHECK(next_migration_phase(P::loading, I::declined) == std::nullopt);
    CHECK(next_migration_phase(P::active, I::loaded) == std::nullopt);
    // Once the operator resumed the guest, a new migration may start.
    CHECK(next_migration_phase(P::in_doubt, I::start) == P::connecting);
}

TEST_CASE("the lifecycle: a completed migration ends the VM as migrated") {
    using LPhase = Phase;
    CHECK(next_phase(LPhase::running, Input::migrated) == LPhase::migrated);
    CHECK(next_phase(LPhase::paused, Input::migrated) == LPhase::migrated);
    CHECK(next_phase(LPhase::migrated, Input::stop) == std::nullopt);
    CHECK(next_phase(LPhase::migrated, Input::qmp_lost) == std::nullopt);
    CHECK(next_phase(LPhase::migrated, Input::exited) == LPhase::exited);
    CHECK(exit_reason(LPhase::migrated, true) == VmExit::Reason::migrated);
    CHECK(exit_reason(LPhase::migrated, false) == VmExit::Reason::migrated);
    CHECK(public_state(LPhase::migrated) == VmState::stopping);
    CHECK(next_phase(LPhase::starting, Input::migrated) == std::nullopt);
}

TEST_CASE("the convergence ladder") {
    MigrationRequest r;
    r.progress_timeout = 10s;
    r.completion_timeout = 100s;
    const uint64_t ram = 1ull << 30;
    auto clock = [](auto elapsed, auto since_progress, auto since_step) {
        return PolicyClock{elapsed, since_progress, since_step};
    };
    CHECK(next_policy_step(r, ram, PolicyStep::none, clock(50s, 5s, 50s)) == PolicyStep::none);
    // No progress for the progress timeout, or past the completion timeout: the first step.
    CHECK(next_policy_step(r, ram, PolicyStep::none, clock(50s, 10s, 50s)) == PolicyStep::downtime);
    CHECK(next_policy_step(r, ram, PolicyStep::none, clock(100s, 0s, 100s)) ==
          PolicyStep::downtime);
    // A step gets its window (min(progress timeout, 60 s)) before the next.
    CHECK(next_policy_step(r, ram, PolicyStep::downtime, clock(105s, 20s, 5s)) == PolicyStep::none);
    // Without auto-converge or post-copy allowed, the next step gives up.
    CHECK(next_policy_step(r, ram, PolicyStep::downtime, clock(110s, 20s, 10s)) ==
          PolicyStep::abort);
    r.auto_converge = true;
    CHECK(next_policy_step(r, ram, PolicyStep::downtime, clock(110s, 20s, 10s)) ==
          PolicyStep::throttle);
    CHECK(next_policy_step(r, ram, PolicyStep::throttle, clock(120s, 20s, 10s)) ==
          PolicyStep::abort);
    r.postcopy = true;
    CHECK(next_policy_step(r, ram, PolicyStep::throttle, clock(120s, 20s, 10s)) ==
          PolicyStep::postcopy);
    // Post-copy always completes: nothing after it.
    CHECK(next_policy_step(r, ram, PolicyStep::postcopy, clock(500s, 500s, 500s)) ==
          PolicyStep::none);
}

TEST_CASE("the completion timeout is 150 s per GiB started, unless asked") {
    MigrationRequest r;
    CHECK(completion_timeout(r, 256ull << 20) == 150s);
    CHECK(completion_timeout(r, 1ull << 30) == 150s);
    CHECK(completion_timeout(r, (4ull << 30) + 1) == 750s);
    r.completion_timeout = 20s;
    CHECK(completion_timeout(r, 4ull << 30) == 20s);
    r.downtime_limit = 300ms;
    CHECK(raised_downtime(r) == 2000ms);
    r.downtime_limit = 1000ms;
    CHECK(raised_downtime(r) == 4000ms);
}

TEST_CASE("migration addresses") {
    auto u = parse_migration_address("unix:/run/m.sock", false);
    REQUIRE(u);
    CHECK((u->kind == MigrationAddress::Kind::unix_socket && u->path == "/run/m.sock"));
    auto t = parse_migration_address("tcp:[::1]:4444", false);
    REQUIRE(t);
    CHECK((t->kind == MigrationAddress::Kind::tcp && t->host == "::1" && t->port == "4444"));
    auto f = parse_migration_address("fd:5", true);
    REQUIRE(f);
    CHECK(f->fd == 5);
    for (const char* bad : {"fd:5", "exec:cat", "tcp:host", "tcp::80", "tcp:h:0", "tcp:h:70000",
                            "unix:", "tcp:h:12x", ""}) {
        INFO(bad);
        auto r = parse_migration_address(bad, false);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::invalid_spec);
        CHECK(r.error().message.find("expected unix:PATH") != std::string::npos);
    }
    CHECK_FALSE(parse_migration_address("fd:2", true));
    CHECK_FALSE(parse_migration_address("unix:/" + std::string(200, 'x'), false));
}

TEST_CASE("the handshake: a hello round-trips, its digest is recomputed") {
    Hello h = hello_with({{"machine", "pc-q35-7.2"}, {"memory.size", "1"}});
    h.postcopy = true;
    h.tls = true;
    auto j = to_json(h);
    j["fingerprint"]["digest"] = "forged";
    auto back = parse_hello(j);
    REQUIRE(back);
    CHECK(back->fingerprint.facts == h.fingerprint.facts);
    CHECK(back->fingerprint.digest == h.fingerprint.digest);
    CHECK((back->postcopy && back->tls && back->accept));
    CHECK(differences(h, *back).empty());
}

TEST_CASE("the handshake refuses what is not a hello of this version") {
    auto good = to_json(hello_with({{"a", "b"}}));
    auto broken = [&](auto change) {
        auto j = good;
        change(j);
        auto r = parse_hello(j);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::protocol);
        return r.error().message;
    };
    CHECK(broken([](auto& j) { j.erase("qshimMigration"); }).find("is the peer a qshim") !=
          std::string::npos);
    CHECK(broken([](auto& j) { j["qshimMigration"] = 2; }).find("version 2") != std::string::npos);
    broken([](auto& j) { j.erase("fingerprint"); });
    broken([](auto& j) { j["fingerprint"]["facts"] = {{"only-key"}}; });
    broken([](auto& j) { j["fingerprint"]["facts"] = {{"k", 1}}; });
    broken([](auto& j) { j["tls"] = "yes"; });
    broken([](auto& j) { j["accept"] = 1; });
}

TEST_CASE("TLS on one side only is a difference") {
    Hello a = hello_with({{"m", "1"}}), b = a;
    b.tls = true;
    auto d = differences(a, b);
    REQUIRE(d.size() == 1);
    CHECK(d[0].rfind("tls: off here, on there", 0) == 0);
    CHECK(describe_differences({"x", "y"}) == "x; y");
}

TEST_CASE("the steps after the stream") {
    CHECK(check_step(step_message("loaded", true), "loaded"));
    auto no = check_step(step_message("loaded", false, "QEMU: bad section"), "loaded");
    REQUIRE_FALSE(no);
    CHECK(no.error().code == Errc::launch);
    CHECK(no.error().message == "the peer's loaded: QEMU: bad section");
    auto wrong = check_step(step_message("commit", true), "running");
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error().code == Errc::protocol);
    CHECK_FALSE(check_step(nlohmann::json::array(), "loaded"));
}

namespace {

// Runs `op` to its end on `io`: awaitable<void> wrappers, as co_spawn needs a default-constructible
// result.
template <typename T>
std::optional<T> run(boost::asio::io_context& io, boost::asio::awaitable<T> op,
                     std::chrono::seconds limit = 10s) {
    std::optional<T> out;
    boost::asio::co_spawn(
        io,
        [&out, op = std::move(op)]() mutable -> boost::asio::awaitable<void> {
            out.emplace(co_await std::move(op));
        },
        boost::asio::detached);
    io.run_for(limit);
    return out;
}

// Runs one exchange over a socketpair: `peer` writes raw bytes, we receive one message.
Result<nlohmann::json> receive_after(const std::string& bytes, bool close_after,
                                     std::chrono::milliseconds timeout = 2s) {
    boost::asio::io_context io;
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    MigrationSocket ours(io, boost::asio::generic::stream_protocol(AF_UNIX, 0), fds[0]);
    if (!bytes.empty()) REQUIRE(write(fds[1], bytes.data(), bytes.size()) == ssize_t(bytes.size()));
    if (close_after) close(fds[1]);
    auto r = run(io, receive_message(ours, timeout));
    if (!close_after) close(fds[1]);
    REQUIRE(r);
    return std::move(*r);
}

}  // namespace

TEST_CASE("a JSON line goes across, and what breaks the protocol is refused") {
    auto ok = receive_after("{\"step\": \"loaded\", \"ok\": true}\n", false);
    REQUIRE(ok);
    CHECK((*ok)["step"] == "loaded");
    auto eof = receive_after("", true);
    REQUIRE_FALSE(eof);
    CHECK(eof.error().code == Errc::interrupted);
    auto two = receive_after("{}\n{}\n", false);
    REQUIRE_FALSE(two);
    CHECK(two.error().code == Errc::protocol);
    auto text = receive_after("hello\n", false);
    REQUIRE_FALSE(text);
    CHECK(text.error().code == Errc::protocol);
    auto silent = receive_after("", false, 50ms);
    REQUIRE_FALSE(silent);
    CHECK(silent.error().code == Errc::timeout);
}

TEST_CASE("a message larger than the limit is refused, not buffered") {
    boost::asio::io_context io;
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    MigrationSocket ours(io, boost::asio::generic::stream_protocol(AF_UNIX, 0), fds[0]);
    MigrationSocket theirs(io, boost::asio::generic::stream_protocol(AF_UNIX, 0), fds[1]);
    nlohmann::json huge = {{"x", std::string(max_message_bytes + 10, 'a')}};
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            auto sent = co_await send_message(theirs, huge, 5s);
            (void)sent;  // the reader stops reading: the send may time out
        },
        boost::asio::detached);
    auto r = run(io, receive_message(ours, 5s));
    REQUIRE(r);
    REQUIRE_FALSE(*r);
    CHECK(r->error().code == Errc::protocol);
}

TEST_CASE("a target listens on an inherited socket (fd:N), and a source connects") {
    char dir_template[] = "/tmp/qshim-mig-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    const std::string dir = dir_template, path = dir + "/in.sock";
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(listen(fd, 1) == 0);

    boost::asio::io_context io;
    auto address = parse_migration_address("fd:" + std::to_string(fd), true);
    REQUIRE(address);
    auto listener = MigrationListener::open(io.get_executor(), *address);
    REQUIRE(listener);
    auto target = parse_migration_address("unix:" + path, false);
    REQUIRE(target);
    std::optional<Result<nlohmann::json>> heard;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            auto accepted = co_await (*listener)->accept();
            if (!accepted) co_return;
            heard.emplace(co_await receive_message(*accepted, 5s));
        },
        boost::asio::detached);
    auto sent = run(io, [&]() -> boost::asio::awaitable<Result<void>> {
        MigrationSocket socket(io.get_executor());
        auto connected = co_await connect_migration(socket, *target, 5s);
        if (!connected) co_return std::move(connected).error();
        co_return co_await send_message(socket, step_message("loaded", true), 5s);
    }());
    REQUIRE(sent);
    REQUIRE(*sent);
    REQUIRE(heard);
    REQUIRE(*heard);
    CHECK((**heard)["step"] == "loaded");
    listener->reset();
    // The inherited descriptor is left as it was: the listener used its own copy.
    CHECK(fcntl(fd, F_GETFD) != -1);
    close(fd);
    unlink(path.c_str());
    rmdir(dir.c_str());
}

TEST_CASE("what cannot be listened on is refused before QEMU starts") {
    boost::asio::io_context io;
    int pipe_fds[2];
    REQUIRE(pipe2(pipe_fds, O_CLOEXEC) == 0);
    auto not_socket = MigrationListener::open(
        io.get_executor(), *parse_migration_address("fd:" + std::to_string(pipe_fds[0]), true));
    REQUIRE_FALSE(not_socket);
    CHECK(not_socket.error().message.find("not an inherited stream socket") != std::string::npos);
    close(pipe_fds[0]);
    close(pipe_fds[1]);

    int idle = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto not_listening = MigrationListener::open(
        io.get_executor(), *parse_migration_address("fd:" + std::to_string(idle), true));
    REQUIRE_FALSE(not_listening);
    CHECK(not_listening.error().message.find("does not listen") != std::string::npos);
    close(idle);

    // An existing path is never taken over.
    auto taken = MigrationListener::open(io.get_executor(),
                                         *parse_migration_address("unix:/dev/null", false));
    REQUIRE_FALSE(taken);
    CHECK(taken.error().code == Errc::conflict);
    // Nobody listening: the source fails at once, naming the target.
    MigrationSocket socket(io.get_executor());
    auto refused =
        run(io, connect_migration(
                    socket, *parse_migration_address("unix:/nonexistent/in.sock", false), 1s));
    REQUIRE(refused);
    REQUIRE_FALSE(*refused);
    CHECK(refused->error().context.find("unix:/nonexistent/in.sock") != std::string::npos);
}

TEST_CASE("a connection under way ends at once when its socket is closed (a cancel)") {
    // A loopback listener whose accept queue is full drops further SYNs: a connect to it hangs
    // (until the kernel's retries or our deadline), as one to an unreachable target does.
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(listener, 0) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    std::vector<int> fillers;
    for (int i = 0; i < 3; ++i) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);  // queued, or left hanging
        fillers.push_back(c);
    }
    auto target =
        parse_migration_address("tcp:127.0.0.1:" + std::to_string(ntohs(a.sin_port)), false);
    REQUIRE(target);

    boost::asio::io_context io;
    MigrationSocket socket(io.get_executor());
    // What a cancel does (Vm::Impl::cancel_migration): close the socket, once it is open.
    boost::asio::steady_timer tick(io);
    std::function<void()> close_once_open = [&] {
        if (socket.is_open()) {
            socket.close();
            return;
        }
        tick.expires_after(10ms);
        tick.async_wait([&](boost::system::error_code) { close_once_open(); });
    };
    close_once_open();
    auto r = run(io, connect_migration(socket, *target, 30s), 60s);
    REQUIRE(r);
    REQUIRE_FALSE(*r);
    CHECK(r->error().code == Errc::interrupted);
    for (int c : fillers) close(c);
    close(listener);
}
