// The target side of a live migration: listen, check the source's guest ABI, hand QEMU the
// stream, then confirm with the source before the guest runs here (docs/migration.md).
#include <fmt/format.h>
#include <poll.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <qshim/log.hpp>

#include "launcher/migration_handshake.hpp"
#include "launcher/migration_qmp.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// How often the target checks that the source is still there while QEMU receives.
constexpr std::chrono::milliseconds peer_check_interval{1'000};

// The source shut its end (it closes it only when it gave up, or after the commit): without
// reading, so QEMU's stream is left alone.
bool peer_hung_up(int fd) {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

json target_capabilities(bool postcopy) {
    return launcher::detail::capabilities_args({
        {"events", true},
        // The images stay inactive (unlocked) until `cont`, which comes only after the source
        // committed: until then the source can still take its VM back (libvirt's default).
        {"late-block-activate", true},
        {"postcopy-ram", postcopy},
    });
}

json tls_parameters() { return {{"tls-creds", launcher::detail::migration_tls_id}}; }

json listening_data(const std::string& address) { return {{"address", address}}; }
json started_data(const std::string& vm, const json& qemu) {
    return {{"role", "target"}, {"source", vm}, {"sourceQemu", qemu}};
}
json completed_data(int64_t ms) { return {{"role", "target"}, {"totalMs", ms}}; }

}  // namespace

Result<void> Vm::Impl::open_incoming(const std::string& context) {
    auto address = launcher::detail::parse_migration_address(options_.incoming, true);
    if (!address) return launcher::detail::with_context(address.error(), context);
    auto listener = launcher::detail::MigrationListener::open(ex_, *address);
    if (!listener) return std::move(listener).error();
    incoming_ = std::move(*listener);
    return {};
}

asio::awaitable<Result<void>> Vm::Impl::receive_migration() {
    using namespace asio::experimental::awaitable_operators;
    const auto step_timeout = options_.migration_step_timeout;
    // The listener goes (and its socket file with it) however this ends.
    std::unique_ptr<launcher::detail::MigrationListener> listener = std::move(incoming_);
    emit("migration-listening", listening_data(listener->description()));
    log::write("migration", log::Level::info,
               "waiting for the migration on " + listener->description());
    auto accepted = co_await (listener->accept() || exited_.wait());
    if (accepted.index() == 1) co_return make_error(Errc::interrupted, "QEMU ended");
    auto socket = std::get<0>(std::move(accepted));
    if (!socket) co_return std::move(socket).error();
    listener.reset();  // one migration per target
    migration_socket_ = std::make_shared<launcher::detail::MigrationSocket>(std::move(*socket));
    const auto start = std::chrono::steady_clock::now();

    auto message = co_await launcher::detail::receive_message(*migration_socket_, step_timeout);
    if (!message)
        co_return launcher::detail::with_context(message.error(), "waiting for the handshake");
    auto theirs = launcher::detail::parse_hello(*message);
    if (!theirs) co_return std::move(theirs).error();
    launcher::detail::Hello hello;
    hello.vm = spec_.name;
    hello.fingerprint = topology::fingerprint(live_.spec, live_.topology);
    hello.qemu = qemu_version_;
    hello.tls = !options_.incoming_tls_dir.empty();
    auto differ = launcher::detail::differences(hello, *theirs);
    hello.accept = differ.empty();
    auto sent =
        co_await launcher::detail::send_message(*migration_socket_, to_json(hello), step_timeout);
    if (!differ.empty())
        co_return make_error(Errc::conflict, "the source is another guest: " +
                                                 launcher::detail::describe_differences(differ));
    if (!sent) co_return launcher::detail::with_context(sent.error(), "answering the handshake");
    emit("migration-started", started_data(theirs->vm, theirs->qemu));
    log::write(
        "migration", log::Level::info,
        fmt::format("migration from {} (QEMU {}) accepted", theirs->vm, theirs->qemu.dump()));

    auto caps =
        co_await qmp_.execute("migrate-set-capabilities", target_capabilities(theirs->postcopy));
    if (!caps) co_return std::move(caps).error();
    if (hello.tls) {
        auto creds = co_await qmp_.execute(
            "object-add", launcher::detail::tls_object(options_.incoming_tls_dir, "server"));
        if (!creds) co_return launcher::detail::with_context(creds.error(), "TLS credentials");
        auto tls = co_await qmp_.execute("migrate-set-parameters", tls_parameters());
        if (!tls) co_return std::move(tls).error();
    }
    auto events = qmp_.listen({{"MIGRATION"}, {}}, 64);
    // The stream is QEMU's from here: qshim keeps the socket, but stops watching it.
    auto parked = launcher::detail::park(*migration_socket_);
    if (!parked) co_return std::move(parked).error();
    auto fd =
        co_await qmp_.execute_with_fd("getfd", launcher::detail::getfd_args(), parked->fd.get());
    if (!fd) co_return std::move(fd).error();
    auto incoming = co_await qmp_.execute("migrate-incoming", launcher::detail::fd_uri_args());
    if (!incoming) co_return std::move(incoming).error();

    // QEMU reads until the source's last byte; the source decides how long that takes.
    std::string status;
    std::string failure;
    while (status != "completed" && failure.empty()) {
        auto e = co_await (events->next(peer_check_interval) || exited_.wait());
        if (e.index() == 1) {
            failure = "QEMU ended";
            break;
        }
        auto ev = std::get<0>(std::move(e));
        if (!ev) {
            if (ev.error().code != Errc::timeout)
                failure = "QEMU's QMP connection ended";
            else if (peer_hung_up(parked->fd.get()))
                // Some failures end QEMU's side without a MIGRATION event (a TLS handshake
                // refused in 7.2): the source giving up is then the only sign.
                failure = "the source closed the stream before QEMU had the whole VM";
            continue;
        }
        status = ev->data.value("status", std::string());
        if (status == "failed" || status == "cancelled") {
            auto info = co_await qmp_.execute("query-migrate");
            failure = "QEMU: " + (info ? info->value("error-desc", status) : status);
        }
    }
    if (auto back = launcher::detail::unpark(*migration_socket_, std::move(*parked)); !back)
        co_return std::move(back).error();
    auto verdict = launcher::detail::step_message("loaded", failure.empty(), failure);
    auto told = co_await launcher::detail::send_message(*migration_socket_, verdict, step_timeout);
    if (!failure.empty())
        co_return make_error(Errc::launch, "the incoming migration failed: " + failure);
    if (!told) co_return launcher::detail::with_context(told.error(), "sending 'loaded'");
    auto commit = co_await launcher::detail::receive_message(*migration_socket_, step_timeout);
    if (!commit)
        co_return make_error(commit.error().code,
                             commit.error().message + "; the source keeps the VM",
                             "waiting for the source's commit");
    if (auto ok = launcher::detail::check_step(*commit, "commit"); !ok)
        co_return std::move(ok).error();
    incoming_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - start)
                       .count();
    co_return Result<void>{};
}

// The guest runs here: tell the source, which then quits its QEMU.
asio::awaitable<void> Vm::Impl::confirm_incoming(bool running, std::string reason) {
    if (!migration_socket_) co_return;
    auto told = co_await launcher::detail::send_message(
        *migration_socket_, launcher::detail::step_message("running", running, reason),
        options_.migration_step_timeout);
    if (!told)
        log::write("migration", log::Level::warn,
                   "could not tell the source the guest runs here: " + told.error().what());
    boost::system::error_code ignored;
    migration_socket_->close(ignored);
    migration_socket_.reset();
    if (running) emit("migration-completed", completed_data(incoming_ms_));
}

}  // namespace qshim
