// The stop ladder: ACPI power button, grace period, quit, SIGKILL; or SIGTERM, SIGKILL without QMP.
#include <fmt/format.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <csignal>
#include <qshim/log.hpp>

#include "common/spawn.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

namespace {

// `quit` needs no guest: QEMU answers at once unless it is stuck, and then SIGKILL is next.
constexpr Ms quit_answer_timeout{2'000};
// The forcing-stop event's data. Built outside the coroutines: g++ 12 miscompiles braced lists
// of string literals inside coroutine frames.
json step(const char* name) {
    json data = json::object();
    data["step"] = name;
    return data;
}

// system_powerdown only queues the button press; its answer is immediate from a live QEMU.
constexpr Ms power_button_timeout{5'000};

}  // namespace

void Vm::Impl::request_stop(std::optional<Ms> grace) {
    const Ms period = grace.value_or(std::chrono::seconds(spec_.lifecycle.grace_period_seconds));
    // A migration under way is cancelled first; its end (vm_migrate.cpp) asks the stop again.
    // Past the commit, the guest is the target's: the migration ends this VM by itself.
    if (launcher::detail::migration_in_progress(migration_phase_)) {
        if (!stop_after_migration_) emit("shutdown-requested", {{"gracePeriodMs", period.count()}});
        stop_after_migration_ = period;
        if (launcher::detail::next_migration_phase(migration_phase_,
                                                   launcher::detail::MigrationInput::cancel))
            qshim::detail::spawn(
                ex_,
                [](std::shared_ptr<Impl> self) -> asio::awaitable<void> {
                    auto r = co_await self->cancel_migration();
                    if (!r)
                        log::write("migration", log::Level::warn,
                                   "cancelling for a stop: " + r.error().what());
                }(shared_from_this()),
                "cancelling the migration for a stop");
        return;
    }
    // A monitor that is already gone, while the loss is not yet declared (QEMU may still have
    // been exiting): a stop needs QMP now, so the loss is certain; declare it, and the stop goes
    // on by signals rather than by a SIGKILL reported as a clean stop.
    if ((phase_ == Phase::running || phase_ == Phase::paused) &&
        qmp_.state() == qmp::State::disconnected)
        on_qmp_closed();
    const Phase before = phase_;
    // The button helps only a guest that runs, reached over QMP, given time to react.
    const bool button =
        before == Phase::running && qmp_.state() == qmp::State::running && period.count() > 0;
    // A guest already powering off needs no button, only the grace period as a limit.
    const bool graceful = button || (before == Phase::guest_stopping && period.count() > 0);
    if (!apply(graceful ? Input::stop : Input::quit)) return;  // already stopping, or gone
    if (before == Phase::created) {  // nothing runs yet: there is nothing to stop
        end_without_qemu("not started");
        return;
    }
    emit("shutdown-requested", {{"gracePeriodMs", period.count()}});
    qshim::detail::spawn(ex_, stop_ladder(shared_from_this(), period, button), "stopping the VM");
}

asio::awaitable<void> Vm::Impl::stop_ladder(std::shared_ptr<Impl> self, Ms grace,
                                            bool press_button) {
    using namespace asio::experimental::awaitable_operators;
    // The grace period runs from the request: a QEMU that does not answer cannot stretch it.
    const auto deadline = std::chrono::steady_clock::now() + grace;
    if (press_button) {
        auto r = co_await self->qmp_.execute("system_powerdown", json::object(),
                                             std::min(grace, power_button_timeout));
        if (!r) log::write("launcher", log::Level::warn, "system_powerdown: " + r.error().what());
    }
    while (self->phase_ == Phase::powering_down) {
        auto left = std::chrono::ceil<Ms>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            self->apply(Input::grace_expired);
            break;
        }
        // Wakes when QEMU exits, when QMP is lost (the phase moved to signalling), or at the end.
        co_await (self->exited_.wait(left) || self->qmp_lost_.wait(left));
    }
    // Written with one exit at the end (see end_by_signals).
    if (self->phase_ == Phase::aborting) {
        // The guest never ran: SIGKILL loses nothing, and QEMU may not answer QMP yet.
        if (!self->exited_.is_set()) launcher::detail::signal_child(self->child_, SIGKILL);
    } else if (self->phase_ == Phase::signalling) {
        co_await end_by_signals(self);
    } else if (self->phase_ == Phase::forcing || self->phase_ == Phase::quitting) {
        bool gone = false;
        // Without QMP (just lost) there is nobody to ask.
        if (self->qmp_.state() == qmp::State::running) {
            self->emit("forcing-stop", step("quit"));
            auto quit = co_await self->qmp_.execute("quit", json::object(), quit_answer_timeout);
            if (quit)
                gone = co_await self->exited_.wait(self->options_.quit_timeout);
            else
                log::write("launcher", log::Level::warn, "quit: " + quit.error().what());
        }
        if (!gone && !self->exited_.is_set()) {
            self->apply(Input::grace_expired);  // a quit that needs SIGKILL is a forced stop
            self->emit("forcing-stop", step("kill"));
            launcher::detail::signal_child(self->child_, SIGKILL);
        }
    }
}

// Without QMP: SIGTERM is QEMU's own orderly shutdown (it flushes disks and exits), then the
// same quit timeout as for `quit`, then SIGKILL.
asio::awaitable<void> Vm::Impl::end_by_signals(std::shared_ptr<Impl> self) {
    // One exit at the end, on purpose: g++ 12 resumed an earlier form of this coroutine (an
    // early `co_return`, then `if (co_await ...) co_return;`) past its end (SIGILL).
    if (!self->exited_.is_set()) {
        self->emit("forcing-stop", step("term"));
        launcher::detail::signal_child(self->child_, SIGTERM);
        bool gone = co_await self->exited_.wait(self->options_.quit_timeout);
        if (!gone) {
            self->emit("forcing-stop", step("kill"));
            launcher::detail::signal_child(self->child_, SIGKILL);
        }
    }
}

}  // namespace qshim
