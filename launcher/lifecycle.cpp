// The lifecycle transition table (modelled on QEMU's own RunState table in runstate.c).
#include "launcher/lifecycle.hpp"

namespace qshim::launcher::detail {

const char* to_string(Phase phase) {
    switch (phase) {
        case Phase::created:
            return "created";
        case Phase::starting:
            return "starting";
        case Phase::running:
            return "running";
        case Phase::paused:
            return "paused";
        case Phase::qmp_lost:
            return "qmp-lost";
        case Phase::guest_stopping:
            return "guest-stopping";
        case Phase::powering_down:
            return "powering-down";
        case Phase::aborting:
            return "aborting";
        case Phase::quitting:
            return "quitting";
        case Phase::forcing:
            return "forcing";
        case Phase::signalling:
            return "signalling";
        case Phase::migrated:
            return "migrated";
        case Phase::exited:
            return "exited";
    }
    return "?";
}

const char* to_string(Input input) {
    switch (input) {
        case Input::spawned:
            return "spawned";
        case Input::resumed:
            return "resumed";
        case Input::stopped:
            return "stopped";
        case Input::guest_shutdown:
            return "guest-shutdown";
        case Input::stop:
            return "stop";
        case Input::quit:
            return "quit";
        case Input::grace_expired:
            return "grace-expired";
        case Input::qmp_lost:
            return "qmp-lost";
        case Input::migrated:
            return "migrated";
        case Input::exited:
            return "exited";
    }
    return "?";
}

std::optional<Phase> next_phase(Phase from, Input input) {
    using P = Phase;
    using I = Input;
    // QEMU ending ends every phase; the reason is read from the phase it ended in.
    if (input == I::exited) return from == P::exited ? std::nullopt : std::optional(P::exited);
    switch (from) {
        case P::created:
            if (input == I::spawned) return P::starting;
            // Nothing runs: a stop is the end (the caller then feeds `exited`).
            if (input == I::stop || input == I::quit) return P::quitting;
            break;
        case P::starting:
            if (input == I::resumed) return P::running;
            // The guest never ran (QEMU is still paused by -S, QMP may not even be up): there is
            // no guest state to save or to lose, so QEMU is killed and that is the asked stop.
            if (input == I::stop || input == I::quit) return P::aborting;
            // A lost connection while starting fails the start itself (a launch failure).
            break;
        case P::running:
        case P::paused:
            if (input == I::stopped) return P::paused;
            if (input == I::resumed) return P::running;
            if (input == I::guest_shutdown) return P::guest_stopping;
            // A paused guest cannot react to the button either.
            if (input == I::stop) return from == P::running ? P::powering_down : P::quitting;
            if (input == I::quit) return P::quitting;
            if (input == I::qmp_lost) return P::qmp_lost;
            // The guest left: what QEMU holds here is a stale copy, ended at once.
            if (input == I::migrated) return P::migrated;
            break;
        case P::qmp_lost:
            if (input == I::stop || input == I::quit) return P::signalling;
            break;
        case P::guest_stopping:
            // The guest is already going; a stop asked now waits for it, with the grace period
            // as the limit (QEMU ought to exit by itself).
            if (input == I::stop || input == I::quit) return P::powering_down;
            // QEMU did not exit after its guest powered off and its monitor went: nobody can
            // tell what it does now. Like any lost VM, a stop then ends it by signals.
            if (input == I::qmp_lost) return P::qmp_lost;
            break;
        case P::powering_down:
            if (input == I::grace_expired) return P::forcing;
            // Without QMP nobody can see the guest power off or ask QEMU to quit.
            if (input == I::qmp_lost) return P::signalling;
            break;
        case P::quitting:
            // `quit` was not answered, or QEMU did not exit after it: SIGKILL is force.
            if (input == I::grace_expired) return P::forcing;
            break;
        case P::aborting:
        case P::forcing:
            // `quit` closes the connection: losing it now is the expected end, not a loss.
        case P::signalling:
        case P::migrated:  // nothing is left to stop: QEMU is being quit
        case P::exited:
            break;
    }
    return std::nullopt;
}

VmExit::Reason exit_reason(Phase ended_in, bool clean_exit) {
    using R = VmExit::Reason;
    // A stop or power-off counts only if QEMU ended the way it does then: exit status 0. A
    // QEMU that dies of a signal (or fails) meanwhile crashed, whatever was asked of it.
    const bool orderly = ended_in == Phase::powering_down || ended_in == Phase::quitting ||
                         ended_in == Phase::guest_stopping;
    if (orderly && !clean_exit) return R::crashed;
    switch (ended_in) {
        case Phase::created:
        case Phase::starting:
            return R::launch_failed;
        case Phase::running:
        case Phase::paused:
            return R::crashed;
        case Phase::qmp_lost:
        case Phase::signalling:
            return R::qmp_lost;
        case Phase::guest_stopping:
            return R::guest_shutdown;
        case Phase::powering_down:
        case Phase::quitting:
        case Phase::aborting:  // killed on purpose, before anything ran
            return R::stopped;
        case Phase::forcing:
            return R::forced;
        case Phase::migrated:
            return R::migrated;  // however QEMU ended, the guest lives on the target
        case Phase::exited:
            break;
    }
    return R::crashed;
}

VmState public_state(Phase phase) {
    switch (phase) {
        case Phase::created:
            return VmState::created;
        case Phase::starting:
            return VmState::starting;
        case Phase::running:
            return VmState::running;
        case Phase::paused:
            return VmState::paused;
        case Phase::qmp_lost:
            return VmState::qmp_lost;
        case Phase::guest_stopping:
        case Phase::powering_down:
        case Phase::aborting:
        case Phase::quitting:
        case Phase::forcing:
        case Phase::signalling:
        case Phase::migrated:
            return VmState::stopping;
        case Phase::exited:
            return VmState::exited;
    }
    return VmState::exited;
}

}  // namespace qshim::launcher::detail
