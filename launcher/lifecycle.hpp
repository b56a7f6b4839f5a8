// The VM's lifecycle as one state machine: its phases, what moves it, and how each phase ends.
#pragma once

#include <optional>
#include <qshim/vm.hpp>

namespace qshim::launcher::detail {

// Where a VM is in its life. Every decision the supervisor makes (may hotplug run, how to stop,
// why QEMU ended) is read from the phase, never from a set of flags.
enum class Phase {
    created,         // nothing started yet
    starting,        // QEMU spawned paused; QMP handshake and plan check under way
    running,         // the vCPUs run
    paused,          // the vCPUs are stopped (pause, or QEMU stopped them)
    qmp_lost,        // QEMU runs, but its QMP connection is gone: nothing can be changed
    guest_stopping,  // the guest powered itself off; QEMU is exiting
    powering_down,   // a stop was asked: the ACPI power button is pressed, the grace period runs
    aborting,        // a stop was asked before the guest ran: SIGKILL, nothing of it can be lost
    quitting,        // a stop was asked of a VM that cannot react to the button: quit, then kill
    forcing,         // the grace period passed: quit, then kill
    signalling,      // a stop was asked (or was under way) without QMP: SIGTERM, then kill
    migrated,        // the guest runs on a migration target now: quit, then kill
    exited,          // QEMU is gone and reaped, or never started
};
const char* to_string(Phase phase);

// What happens to a VM. Each input is one fact the supervisor observed or one request.
enum class Input {
    spawned,         // QEMU was spawned (paused)
    resumed,         // `cont` succeeded, or QMP RESUME
    stopped,         // QMP STOP: the vCPUs stopped
    guest_shutdown,  // QMP SHUTDOWN with guest: true
    stop,            // a stop was requested and the guest can react: press the button
    quit,            // a stop was requested and the guest cannot react (paused, never ran,
                     // no grace period): quit at once; this is the stop, not a forced one
    grace_expired,   // the grace period of a stop passed, or `quit` was not answered in time
    qmp_lost,        // the QMP connection ended while QEMU still ran
    migrated,        // a migration completed: the target runs the guest
    exited,          // QEMU was reaped (or, from `created`, will never run)
};
const char* to_string(Input input);

// The one transition table. nullopt: the input does not apply in that phase and is ignored
// (a STOP event while stopping, a second stop request, ...).
std::optional<Phase> next_phase(Phase from, Input input);

// Why QEMU ended, from the phase it ended in: a stop that went as asked is `stopped`, one that
// needed force `forced`, a VM that had lost QMP `qmp_lost` (never a clean exit: nobody saw how
// the guest ended), and an exit nobody asked for `crashed`. `clean_exit`: QEMU exited with
// status 0; a stop or power-off during which QEMU died otherwise is `crashed`.
VmExit::Reason exit_reason(Phase ended_in, bool clean_exit = true);

// The phase as the public API reports it.
VmState public_state(Phase phase);

// Whether the VM can be changed (hotplug, pause, resume) in this phase.
inline bool accepts_changes(Phase phase) {
    return phase == Phase::running || phase == Phase::paused;
}

}  // namespace qshim::launcher::detail
