// The migration state machine's table and the convergence policy (docs/migration.md).
#include "launcher/migration.hpp"

#include <algorithm>

namespace qshim::launcher::detail {

using namespace std::chrono_literals;

const char* to_string(MigrationPhase phase) {
    switch (phase) {
        case MigrationPhase::none:
            return "none";
        case MigrationPhase::connecting:
            return "connecting";
        case MigrationPhase::handshake:
            return "handshake";
        case MigrationPhase::active:
            return "active";
        case MigrationPhase::switchover:
            return "switchover";
        case MigrationPhase::loading:
            return "loading";
        case MigrationPhase::committed:
            return "committed";
        case MigrationPhase::completed:
            return "completed";
        case MigrationPhase::failed:
            return "failed";
        case MigrationPhase::cancelling:
            return "cancelling";
        case MigrationPhase::cancelled:
            return "cancelled";
        case MigrationPhase::in_doubt:
            return "in-doubt";
    }
    return "?";
}

const char* public_name(MigrationPhase phase) {
    switch (phase) {
        case MigrationPhase::loading:
        case MigrationPhase::committed:
            return "confirming";
        case MigrationPhase::in_doubt:
            return "failed";
        default:
            return to_string(phase);
    }
}

const char* to_string(MigrationInput input) {
    switch (input) {
        case MigrationInput::start:
            return "start";
        case MigrationInput::connected:
            return "connected";
        case MigrationInput::accepted:
            return "accepted";
        case MigrationInput::qemu_switchover:
            return "qemu-switchover";
        case MigrationInput::qemu_completed:
            return "qemu-completed";
        case MigrationInput::loaded:
            return "loaded";
        case MigrationInput::confirmed:
            return "confirmed";
        case MigrationInput::declined:
            return "declined";
        case MigrationInput::failed:
            return "failed";
        case MigrationInput::cancel:
            return "cancel";
        case MigrationInput::cancelled:
            return "cancelled";
    }
    return "?";
}

std::optional<MigrationPhase> next_migration_phase(MigrationPhase from, MigrationInput input) {
    using P = MigrationPhase;
    using I = MigrationInput;
    switch (from) {
        case P::none:
        case P::failed:
        case P::cancelled:
        case P::in_doubt:  // a paused VM cannot migrate: the operator resumes it first
            if (input == I::start) return P::connecting;
            break;
        case P::completed:
            break;  // the guest left: nothing more happens here
        case P::connecting:
            if (input == I::connected) return P::handshake;
            break;
        case P::handshake:
            if (input == I::accepted) return P::active;
            break;
        case P::active:
            if (input == I::qemu_switchover) return P::switchover;
            // Post-copy has no pre-switchover pause.
            if (input == I::qemu_completed) return P::loading;
            break;
        case P::switchover:
            if (input == I::qemu_completed) return P::loading;
            break;
        case P::loading:
            if (input == I::loaded) return P::committed;
            if (input == I::failed) return P::failed;
            return std::nullopt;  // a cancel is too late now
        case P::committed:
            if (input == I::confirmed) return P::completed;
            if (input == I::declined) return P::failed;
            if (input == I::failed) return P::in_doubt;
            return std::nullopt;
        case P::cancelling:
            if (input == I::cancelled) return P::cancelled;
            if (input == I::failed) return P::failed;
            // QEMU finished sending before the cancel reached it: the target decides now.
            if (input == I::qemu_completed) return P::loading;
            return std::nullopt;
    }
    if (migration_in_progress(from)) {
        if (input == I::failed) return P::failed;
        if (input == I::cancel) return P::cancelling;
    }
    return std::nullopt;
}

bool migration_in_progress(MigrationPhase phase) {
    switch (phase) {
        case MigrationPhase::connecting:
        case MigrationPhase::handshake:
        case MigrationPhase::active:
        case MigrationPhase::switchover:
        case MigrationPhase::loading:
        case MigrationPhase::committed:
        case MigrationPhase::cancelling:
            return true;
        default:
            return false;
    }
}

const char* to_string(PolicyStep step) {
    switch (step) {
        case PolicyStep::none:
            return "none";
        case PolicyStep::downtime:
            return "downtime";
        case PolicyStep::throttle:
            return "throttle";
        case PolicyStep::postcopy:
            return "postcopy";
        case PolicyStep::abort:
            return "abort";
    }
    return "?";
}

std::chrono::seconds completion_timeout(const MigrationRequest& request, uint64_t memory_bytes) {
    if (request.completion_timeout.count() > 0) return request.completion_timeout;
    // KubeVirt's completionTimeoutPerGiB, 150 s, counted in whole GiB started.
    const uint64_t gib = std::max<uint64_t>(1, (memory_bytes + (1ull << 30) - 1) >> 30);
    return std::chrono::seconds(150 * gib);
}

std::chrono::seconds step_window(const MigrationRequest& request) {
    return std::min(request.progress_timeout, std::chrono::seconds(60));
}

PolicyStep next_policy_step(const MigrationRequest& request, uint64_t memory_bytes, PolicyStep last,
                            const PolicyClock& clock) {
    const bool stalled = clock.since_progress >= request.progress_timeout;
    const bool late = clock.elapsed >= completion_timeout(request, memory_bytes);
    if (!stalled && !late) return PolicyStep::none;
    // The step before this one gets its window to work.
    if (last != PolicyStep::none && clock.since_step < step_window(request))
        return PolicyStep::none;
    switch (last) {
        case PolicyStep::none:
            return PolicyStep::downtime;
        case PolicyStep::downtime:
            if (request.auto_converge) return PolicyStep::throttle;
            [[fallthrough]];
        case PolicyStep::throttle:
            if (request.postcopy) return PolicyStep::postcopy;
            return PolicyStep::abort;
        case PolicyStep::postcopy:
            // Post-copy always completes; only a dead target ends it, and QEMU reports that.
            return PolicyStep::none;
        case PolicyStep::abort:
            break;
    }
    return PolicyStep::none;
}

std::chrono::milliseconds raised_downtime(const MigrationRequest& request) {
    return std::max(request.downtime_limit * 4, std::chrono::milliseconds(2'000));
}

}  // namespace qshim::launcher::detail
