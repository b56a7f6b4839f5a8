// A migration's source side as one state machine, and the convergence policy (pure, no I/O).
#pragma once

#include <chrono>
#include <optional>
#include <qshim/vm.hpp>

namespace qshim::launcher::detail {

enum class MigrationPhase {
    none,        // never migrated
    connecting,  // connecting to the target's address
    handshake,   // comparing fingerprints with the target qshim
    active,      // QEMU streams RAM (pre-copy, or post-copy once switched)
    switchover,  // QEMU paused the guest before switchover (pause-before-switchover); qshim
                 // lets it send the rest
    loading,     // QEMU sent everything; the target is loading it. The guest is still ours, but a
                 // cancel is refused from here on: the target decides.
    committed,   // the target loaded it and was told it owns the guest: it may be running it
                 // now, so the guest is never resumed here again unless the target declines
    completed,   // the guest runs on the target; this QEMU is being quit
    failed,      // the guest runs on here; a new migration may start
    cancelling,  // a cancel was asked; QEMU (or qshim) is winding the migration down
    cancelled,   // the guest runs on here; a new migration may start
    in_doubt,    // the connection broke after the commit: the target may run the guest, so it
                 // stays paused here (the operator decides; resuming it makes a new start possible)
};
const char* to_string(MigrationPhase phase);
// The state the API reports (MigrationStatus::state): loading and committed are `confirming`,
// in_doubt is `failed` (its error says why the guest stays paused).
const char* public_name(MigrationPhase phase);

enum class MigrationInput {
    start,            // a migration was asked
    connected,        // the target accepted the connection
    accepted,         // the target's fingerprint equals ours; QEMU was handed the stream
    qemu_switchover,  // QEMU: pre-switchover
    qemu_completed,   // QEMU: completed (everything sent)
    loaded,           // the target loaded the whole VM; the commit goes out
    confirmed,        // the target runs the guest
    declined,         // the target said, after the commit, that it does not run the guest
    failed,           // anything failed (QEMU, the socket, the target, a timeout)
    cancel,           // a cancel was asked
    cancelled,        // the cancel took effect
};
const char* to_string(MigrationInput input);

// nullopt: the input does not apply in that phase.
std::optional<MigrationPhase> next_migration_phase(MigrationPhase from, MigrationInput input);

// From connecting to committed, and cancelling: hotplug and a second migration are refused
// meanwhile.
bool migration_in_progress(MigrationPhase phase);

// The convergence ladder (docs/migration.md): each step is tried when the migration has made no
// progress (no new low of remaining bytes) for progress_timeout, or when it runs past
// completion_timeout; a step gets `step_window` to work before the next one.
enum class PolicyStep { none, downtime, throttle, postcopy, abort };
const char* to_string(PolicyStep step);

struct PolicyClock {
    std::chrono::steady_clock::duration elapsed{};  // since the migration started
    std::chrono::steady_clock::duration
        since_progress{};                              // since remaining bytes fell to a new low
    std::chrono::steady_clock::duration since_step{};  // since the last step (or the start)
};

std::chrono::seconds completion_timeout(const MigrationRequest& request, uint64_t memory_bytes);
std::chrono::seconds step_window(const MigrationRequest& request);

// The next step to take now, or none. `last`: the last step taken.
PolicyStep next_policy_step(const MigrationRequest& request, uint64_t memory_bytes, PolicyStep last,
                            const PolicyClock& clock);

// The raised downtime limit of the `downtime` step: four times the asked one, at least 2 s.
std::chrono::milliseconds raised_downtime(const MigrationRequest& request);

}  // namespace qshim::launcher::detail
