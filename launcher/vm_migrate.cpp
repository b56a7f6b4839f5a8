// The source side of a live migration: connect, handshake, let QEMU stream, follow it with the
// convergence policy, confirm with the target, then quit (docs/migration.md).
#include <fmt/format.h>

#include <csignal>
#include <filesystem>
#include <qshim/log.hpp>

#include "common/spawn.hpp"
#include "launcher/migration_handshake.hpp"
#include "launcher/migration_qmp.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using launcher::detail::MigrationInput;
using launcher::detail::MigrationPhase;
using launcher::detail::PolicyStep;
using nlohmann::json;
using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// How often QEMU's figures are read while it streams, and how often they are announced.
constexpr Ms poll_interval{500};
constexpr Ms progress_interval{2'000};

// JSON is built in plain functions: g++ 12 miscompiles braced lists of string literals inside
// coroutine frames.
json capabilities(const MigrationRequest& r) {
    return launcher::detail::capabilities_args({
        {"events", true},
        // qshim, not QEMU, decides when the guest stops here for the last time (libvirt's default).
        {"pause-before-switchover", true},
        {"auto-converge", r.auto_converge},
        {"postcopy-ram", r.postcopy},
    });
}

json parameters(const MigrationRequest& r) {
    json p = json::object();
    p["downtime-limit"] = r.downtime_limit.count();
    // QEMU 7.2's default is 128 MiB/s, below what a busy guest dirties; 0 asks for none.
    p["max-bandwidth"] = r.max_bandwidth_mibps ? r.max_bandwidth_mibps << 20 : (1ull << 62);
    return p;
}

json started_data(const std::string& uri, const char* role) {
    return {{"uri", uri}, {"role", role}};
}

json reason_data(const std::string& reason) { return {{"reason", reason}}; }

json progress_data(const MigrationStatus& s) {
    return {{"percent", s.percent},
            {"transferredBytes", s.transferred_bytes},
            {"remainingBytes", s.remaining_bytes},
            {"totalBytes", s.total_bytes},
            {"dirtyRateBytes", s.dirty_rate_bytes},
            {"expectedDowntimeMs", s.expected_downtime_ms},
            {"iterations", s.iterations}};
}

json completed_data(const MigrationStatus& s) {
    json d = progress_data(s);
    if (s.setup_ms) d["setupMs"] = *s.setup_ms;
    if (s.total_ms) d["totalMs"] = *s.total_ms;
    if (s.downtime_ms) d["downtimeMs"] = *s.downtime_ms;
    d["role"] = "source";
    return d;
}

json policy_data(PolicyStep step, const std::string& detail) {
    return {{"step", launcher::detail::to_string(step)}, {"detail", detail}};
}

// Every migration sets them: an earlier one's TLS must not leak into a plain one.
json tls_parameters(bool on, const std::string& hostname) {
    json p = json::object();
    p["tls-creds"] = on ? launcher::detail::migration_tls_id : "";
    p["tls-hostname"] = on ? hostname : "";
    return p;
}

json continue_args() { return {{"state", "pre-switchover"}}; }
json downtime_args(Ms limit) { return {{"downtime-limit", limit.count()}}; }
// Throttle harder and sooner than QEMU's defaults (20 %, +10 %).
json throttle_args() { return {{"cpu-throttle-initial", 50}, {"cpu-throttle-increment", 20}}; }

uint64_t number(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<uint64_t>() : 0;
}

// query-migrate's figures into the status.
void read_figures(const json& info, MigrationStatus& s) {
    if (info.contains("ram") && info["ram"].is_object()) {
        const json& ram = info["ram"];
        s.transferred_bytes = number(ram, "transferred");
        s.remaining_bytes = number(ram, "remaining");
        s.total_bytes = number(ram, "total");
        s.dirty_rate_bytes = number(ram, "dirty-pages-rate") * number(ram, "page-size");
        s.iterations = number(ram, "dirty-sync-count");
        if (s.total_bytes)
            s.percent = 100.0 * double(s.total_bytes - std::min(s.remaining_bytes, s.total_bytes)) /
                        double(s.total_bytes);
    }
    if (info.contains("expected-downtime") && info["expected-downtime"].is_number())
        s.expected_downtime_ms = info["expected-downtime"].get<int64_t>();
    if (info.value("status", std::string()) == "completed") {
        s.percent = 100;
        s.remaining_bytes = 0;
        for (auto [key, field] :
             {std::pair{"setup-time", &s.setup_ms}, std::pair{"total-time", &s.total_ms},
              std::pair{"downtime", &s.downtime_ms}})
            if (info.contains(key) && info[key].is_number()) *field = info[key].get<int64_t>();
    }
}

}  // namespace

bool Vm::Impl::migrate_to(MigrationInput input) {
    auto to = launcher::detail::next_migration_phase(migration_phase_, input);
    if (!to) {
        log::write("migration", log::Level::debug,
                   fmt::format("{} ignored: the migration is {}", to_string(input),
                               to_string(migration_phase_)));
        return false;
    }
    log::write("migration", log::Level::debug,
               fmt::format("migration {} -> {} ({})", to_string(migration_phase_), to_string(*to),
                           to_string(input)));
    migration_phase_ = *to;
    migration_status_.state = launcher::detail::public_name(*to);
    return true;
}

Error Vm::Impl::migration_state_error() const {
    return make_error(Errc::conflict,
                      fmt::format("the migration is {}", to_string(migration_phase_)));
}

MigrationStatus Vm::Impl::migration() const { return migration_status_; }

asio::awaitable<Result<void>> Vm::Impl::migrate(MigrationRequest request) {
    const std::string context = "migrating VM " + spec_.name + " to " + request.uri;
    auto address = launcher::detail::parse_migration_address(request.uri, false);
    if (!address) co_return launcher::detail::with_context(address.error(), context);
    if (request.multifd_channels > 1)
        co_return make_error(Errc::unsupported,
                             "multifd needs one connection per channel, and the handshake runs on "
                             "one stream: multifdChannels must be 0 or 1 (docs/migration.md)",
                             context);
    if (request.postcopy)
        co_return make_error(Errc::unsupported,
                             "post-copy is not available: QEMU's sandbox denies userfaultfd (a "
                             "kernel attack surface that QEMU's uid could not use anyway without "
                             "vm.unprivileged_userfaultfd=1), and a stream broken during "
                             "post-copy loses the VM (docs/migration.md)",
                             context);
    if (request.downtime_limit < 1ms || request.downtime_limit > 60s)
        co_return make_error(Errc::invalid_spec, "downtimeLimitMs must be 1 to 60000", context);
    // The live spec: a hot-plugged vhost-user disk holds the migration back too.
    if (auto why = launcher::detail::unmigratable_disks(live_.spec); !why.empty())
        co_return make_error(Errc::unsupported, why, context);
    if (!request.tls_dir.empty()) {
        std::error_code ec;
        if (request.tls_dir[0] != '/' || !std::filesystem::is_directory(request.tls_dir, ec))
            co_return make_error(Errc::invalid_spec,
                                 "tlsDir must be an absolute path to a folder with ca-cert.pem, "
                                 "client-cert.pem and client-key.pem",
                                 context);
        if (request.tls_hostname.empty() &&
            address->kind == launcher::detail::MigrationAddress::Kind::tcp)
            request.tls_hostname = address->host;
        if (request.tls_hostname.empty())
            co_return make_error(Errc::invalid_spec,
                                 "tlsHostname is needed with TLS over a unix: URI: the name the "
                                 "target's certificate carries",
                                 context);
    }
    if (request.progress_timeout < 1s)
        co_return make_error(Errc::invalid_spec, "progressTimeoutSeconds must be at least 1",
                             context);
    // One change at a time: a hotplug under way finishes first.
    auto turn = co_await hotplug_.lock();
    if (auto ok = can_change(); !ok) co_return launcher::detail::with_context(ok.error(), context);
    // The target always runs the guest it receives: a paused VM would arrive running.
    if (phase_ == Phase::paused)
        co_return make_error(Errc::conflict,
                             "the VM is paused: resume it first (a migrated VM runs on the "
                             "target)",
                             context);
    if (!migrate_to(MigrationInput::start)) co_return migration_state_error();
    migration_request_ = request;
    migration_status_ = MigrationStatus{};
    migration_status_.state = launcher::detail::public_name(migration_phase_);
    migration_status_.uri = request.uri;
    migration_address_ = *address;
    emit("migration-started", started_data(request.uri, "source"));
    log::write("migration", log::Level::info, context);
    qshim::detail::spawn(ex_, run_migration(shared_from_this()), "migrating the VM");
    co_return Result<void>{};
}

asio::awaitable<Result<void>> Vm::Impl::cancel_migration() {
    const MigrationPhase before = migration_phase_;
    if (before == MigrationPhase::loading || before == MigrationPhase::committed)
        co_return make_error(Errc::conflict,
                             "the target has the whole VM and is deciding: too late to cancel",
                             "cancelling the migration");
    if (!migrate_to(MigrationInput::cancel))
        co_return launcher::detail::with_context(migration_state_error(), "nothing to cancel");
    log::write("migration", log::Level::info, "cancelling the migration");
    if (before == MigrationPhase::active || before == MigrationPhase::switchover) {
        // QEMU has the stream: it winds down and reports `cancelled`.
        auto r = co_await qmp_.execute("migrate_cancel");
        if (!r) co_return launcher::detail::with_context(r.error(), "migrate_cancel");
    } else if (migration_socket_) {
        // Connecting or in the handshake: closing the socket ends the wait at once.
        boost::system::error_code ignored;
        migration_socket_->close(ignored);
    }
    co_return Result<void>{};
}

asio::awaitable<void> Vm::Impl::run_migration(std::shared_ptr<Impl> self) {
    Result<void> outcome = co_await self->stream_migration();
    if (outcome) outcome = co_await self->confirm_migration();
    co_await self->finish_migration(std::move(outcome));
}

asio::awaitable<Result<void>> Vm::Impl::stream_migration() {
    const auto step_timeout = options_.migration_step_timeout;
    // Ours before the connection is: a cancel closes it, which ends the wait at once.
    migration_socket_ = std::make_shared<launcher::detail::MigrationSocket>(ex_);
    auto socket = migration_socket_;
    auto connected =
        co_await launcher::detail::connect_migration(*socket, migration_address_, step_timeout);
    if (migration_phase_ == MigrationPhase::cancelling)
        co_return make_error(Errc::interrupted, "cancelled");
    if (!connected) co_return std::move(connected).error();
    if (!migrate_to(MigrationInput::connected)) co_return migration_state_error();

    // The handshake: our guest ABI against the target's, before QEMU sends a byte.
    launcher::detail::Hello hello;
    hello.vm = spec_.name;
    hello.fingerprint = topology::fingerprint(live_.spec, live_.topology);
    hello.qemu = qemu_version_;
    hello.postcopy = migration_request_.postcopy;
    hello.tls = !migration_request_.tls_dir.empty();
    auto sent =
        co_await launcher::detail::send_message(*migration_socket_, to_json(hello), step_timeout);
    if (!sent) co_return launcher::detail::with_context(sent.error(), "handshake");
    auto answer = co_await launcher::detail::receive_message(*migration_socket_, step_timeout);
    if (!answer) co_return launcher::detail::with_context(answer.error(), "handshake");
    auto theirs = launcher::detail::parse_hello(*answer);
    if (!theirs) co_return std::move(theirs).error();
    log::write("migration", log::Level::info,
               fmt::format("target QEMU {}, fingerprint {}", theirs->qemu.dump(),
                           theirs->fingerprint.digest));
    auto differ = launcher::detail::differences(hello, *theirs);
    if (!differ.empty())
        co_return make_error(Errc::conflict, "the target is another guest: " +
                                                 launcher::detail::describe_differences(differ));
    if (!theirs->accept) co_return make_error(Errc::conflict, "the target refused the handshake");
    if (migration_phase_ == MigrationPhase::cancelling)
        co_return make_error(Errc::interrupted, "cancelled");

    auto caps = co_await qmp_.execute("migrate-set-capabilities", capabilities(migration_request_));
    if (!caps) co_return std::move(caps).error();
    auto params = co_await qmp_.execute("migrate-set-parameters", parameters(migration_request_));
    if (!params) co_return std::move(params).error();
    // The credentials are loaded now (QEMU reads the files as its own uid): a bad folder fails
    // here, before the stream starts.
    // An earlier attempt's credentials go first; none is the usual answer.
    auto stale = co_await qmp_.execute("object-del", launcher::detail::tls_object_del_args());
    (void)stale;
    if (hello.tls) {
        auto creds = co_await qmp_.execute(
            "object-add", launcher::detail::tls_object(migration_request_.tls_dir, "client"));
        if (!creds) co_return launcher::detail::with_context(creds.error(), "TLS credentials");
    }
    auto tls = co_await qmp_.execute("migrate-set-parameters",
                                     tls_parameters(hello.tls, migration_request_.tls_hostname));
    if (!tls) co_return std::move(tls).error();
    auto events = qmp_.listen({{"MIGRATION"}, {}}, 64);
    auto fd = co_await qmp_.execute_with_fd("getfd", launcher::detail::getfd_args(),
                                            migration_socket_->native_handle());
    if (!fd) co_return std::move(fd).error();
    if (migration_phase_ == MigrationPhase::cancelling)
        co_return make_error(Errc::interrupted, "cancelled");
    if (!migrate_to(MigrationInput::accepted)) co_return migration_state_error();
    auto started = co_await qmp_.execute("migrate", launcher::detail::fd_uri_args());
    if (!started) co_return std::move(started).error();
    co_return co_await follow_migration(*events);
}

// Follows QEMU until it has sent everything (ok), failed or was cancelled (an Error), with the
// convergence policy on the way.
asio::awaitable<Result<void>> Vm::Impl::follow_migration(qmp::EventListener& events) {
    const auto start = Clock::now();
    auto last_progress = start, last_step = start, last_report = start;
    uint64_t lowest_remaining = UINT64_MAX;
    PolicyStep step = PolicyStep::none;
    std::string status;
    for (;;) {
        auto e = co_await events.next(poll_interval);
        if (!e && e.error().code != Errc::timeout)
            co_return make_error(Errc::interrupted, "QEMU's QMP connection ended mid-migration");
        status = e ? e->data.value("status", std::string()) : std::string();
        if (status != "pre-switchover") {
            auto info = co_await qmp_.execute("query-migrate");
            if (!info) co_return std::move(info).error();
            status = info->value("status", std::string());
            read_figures(*info, migration_status_);
            if (status == "failed")
                co_return make_error(Errc::launch,
                                     "QEMU: " + info->value("error-desc", std::string("failed")));
        }
        if (status == "pre-switchover") {
            // The guest is stopped until QEMU goes on, and every millisecond of it is downtime:
            // the event is answered before anything else. (query-migrate says so too, should the
            // event have been dropped.) Only the last dirty pages and the device state are left.
            if (migration_phase_ != MigrationPhase::active) continue;
            migrate_to(MigrationInput::qemu_switchover);
            auto go = co_await qmp_.execute("migrate-continue", continue_args());
            if (!go) co_return std::move(go).error();
            continue;
        }
        const auto now = Clock::now();
        if (migration_status_.remaining_bytes < lowest_remaining && status == "active") {
            lowest_remaining = migration_status_.remaining_bytes;
            last_progress = now;
        }
        if (status == "cancelled") co_return make_error(Errc::interrupted, "cancelled");
        if (status == "completed") {
            if (!migrate_to(MigrationInput::qemu_completed)) co_return migration_state_error();
            co_return Result<void>{};
        }
        if (now - last_report >= progress_interval && status == "active") {
            last_report = now;
            emit("migration-progress", progress_data(migration_status_));
        }
        if (migration_phase_ != MigrationPhase::active || status != "active") continue;
        launcher::detail::PolicyClock clock{now - start, now - last_progress, now - last_step};
        auto next = launcher::detail::next_policy_step(migration_request_, spec_.memory.size_bytes,
                                                       step, clock);
        if (next == PolicyStep::none) continue;
        step = next;
        last_step = now;
        migration_status_.policy = to_string(step);
        if (step == PolicyStep::abort) {
            emit("migration-policy", policy_data(step, "no convergence: cancelling"));
            co_await qmp_.execute("migrate_cancel");
            co_return make_error(Errc::timeout,
                                 fmt::format("did not converge: no progress for {} s or past "
                                             "{} s, with every allowed step taken",
                                             migration_request_.progress_timeout.count(),
                                             launcher::detail::completion_timeout(
                                                 migration_request_, spec_.memory.size_bytes)
                                                 .count()));
        }
        Result<json> done = json::object();
        std::string detail;
        if (step == PolicyStep::downtime) {
            auto limit = launcher::detail::raised_downtime(migration_request_);
            detail = fmt::format("downtime limit raised to {} ms", limit.count());
            done = co_await qmp_.execute("migrate-set-parameters", downtime_args(limit));
        } else if (step == PolicyStep::throttle) {
            detail = "vCPU throttling starts at 50 % and rises by 20 %";
            done = co_await qmp_.execute("migrate-set-parameters", throttle_args());
        } else if (step == PolicyStep::postcopy) {
            detail = "switched to post-copy";
            done = co_await qmp_.execute("migrate-start-postcopy");
        }
        if (!done) detail += " failed: " + done.error().what();
        log::write("migration", log::Level::warn, "convergence policy: " + detail);
        emit("migration-policy", policy_data(step, detail));
    }
}

// After QEMU sent everything: the target loaded it, we commit, the target runs it.
asio::awaitable<Result<void>> Vm::Impl::confirm_migration() {
    const auto step_timeout = options_.migration_step_timeout;
    auto& socket = *migration_socket_;
    auto loaded = co_await launcher::detail::receive_message(socket, step_timeout);
    if (!loaded) co_return launcher::detail::with_context(loaded.error(), "waiting for 'loaded'");
    if (auto ok = launcher::detail::check_step(*loaded, "loaded"); !ok)
        co_return std::move(ok).error();
    // From here the guest belongs to the target: whatever happens, it is never resumed here.
    if (!migrate_to(MigrationInput::loaded)) co_return migration_state_error();
    auto sent = co_await launcher::detail::send_message(
        socket, launcher::detail::step_message("commit", true), step_timeout);
    if (!sent) co_return launcher::detail::with_context(sent.error(), "sending 'commit'");
    auto running = co_await launcher::detail::receive_message(socket, step_timeout);
    if (!running)
        co_return launcher::detail::with_context(running.error(), "waiting for 'running'");
    if (auto ok = launcher::detail::check_step(*running, "running"); !ok) {
        // The target said plainly that it does not run the guest (and ends its QEMU): the
        // guest is ours again.
        if (ok.error().code == Errc::launch) migrate_to(MigrationInput::declined);
        co_return std::move(ok).error();
    }
    co_return Result<void>{};
}

asio::awaitable<void> Vm::Impl::finish_migration(Result<void> outcome) {
    if (migration_socket_) {
        boost::system::error_code ignored;
        migration_socket_->close(ignored);
        migration_socket_.reset();
    }
    if (outcome) {
        // QEMU says `completed` a moment before it has computed the totals: read them now.
        if (auto info = co_await qmp_.execute("query-migrate"); info)
            read_figures(*info, migration_status_);
        migrate_to(MigrationInput::confirmed);
        emit("migration-completed", completed_data(migration_status_));
        log::write("migration", log::Level::info, "the VM runs on the target; quitting QEMU here");
        if (apply(Input::migrated)) co_await quit_migrated();
        co_return;
    }
    const bool cancelled = migration_phase_ == MigrationPhase::cancelling;
    migrate_to(cancelled ? MigrationInput::cancelled : MigrationInput::failed);
    // Past the commit the target may run the guest: resuming it here could run it twice.
    const bool resume = migration_phase_ != MigrationPhase::in_doubt;
    // QEMU may still be winding down (a cancel it has not finished, a failed stream): wait for it,
    // so a new migration can start at once.
    for (int i = 0; i < 20; ++i) {
        auto info = co_await qmp_.execute("query-migrate");
        std::string s = info ? info->value("status", std::string()) : std::string();
        if (!info || !launcher::detail::qemu_migration_busy(s)) break;
        if (s == "active" || s == "pre-switchover") co_await qmp_.execute("migrate_cancel");
        asio::steady_timer pause(ex_, 100ms);
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    std::string reason = outcome.error().what();
    // The guest ran when the migration started (a paused VM is refused), and QEMU paused it at
    // the switchover, if it got that far.
    if (resume && accepts_changes(phase_)) {
        auto status = co_await qmp_.execute("query-status");
        if (status && status->value("status", std::string()) != "running") {
            auto cont = co_await qmp_.execute("cont");
            if (!cont) reason += "; resuming the guest failed: " + cont.error().what();
        }
    } else if (!resume) {
        reason +=
            "; the target may run the guest, so it stays paused here: resume it only "
            "if the target does not run it";
    }
    if (migration_phase_ == MigrationPhase::cancelled) {
        emit("migration-cancelled", reason_data(reason));
    } else {
        migration_status_.error = reason;
        emit("migration-failed", reason_data(reason));
    }
    log::write("migration", log::Level::warn, "migration ended: " + reason);
    if (stop_after_migration_) {
        auto grace = *stop_after_migration_;
        stop_after_migration_.reset();
        request_stop(grace);
    }
}

// The guest runs on the target: QEMU here only holds a stale copy. `quit`, then SIGKILL.
asio::awaitable<void> Vm::Impl::quit_migrated() {
    auto quit = co_await qmp_.execute("quit", json::object(), 2s);
    if (quit) co_await exited_.wait(options_.quit_timeout);
    if (!exited_.is_set()) launcher::detail::signal_child(child_, SIGKILL);
}

}  // namespace qshim
