// The VM's helper processes (launcher/helper.hpp): started before QEMU, stopped after it.
#include <fmt/format.h>
#include <sys/wait.h>

#include <qshim/log.hpp>

#include "common/spawn.hpp"
#include "launcher/helper_plan.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// How long a helper has to exit after SIGTERM once QEMU is gone, before SIGKILL.
constexpr auto helper_stop_grace = 3s;
// How long QEMU has to be seen exiting after a helper ended, for the helper's end to be QEMU's.
constexpr auto helper_exit_settle = 2s;

}  // namespace

launcher::detail::HelperBinaries Vm::Impl::helper_binaries() const {
    launcher::detail::HelperBinaries binaries;
    binaries.storage_daemon = options_.command.storage_daemon_binary;
    binaries.virtiofsd = options_.command.virtiofsd_binary;
    binaries.passt = options_.command.passt_binary;
    return binaries;
}

asio::awaitable<Result<void>> Vm::Impl::start_helpers(
    const launcher::detail::SandboxPlan& sandbox) {
    helper_sandbox_ = sandbox;  // for helpers of devices hot-plugged later
    auto planned = launcher::detail::plan_helpers(spec_, state_dir(), helper_binaries());
    if (!planned) co_return std::move(planned).error();
    for (auto& plan : *planned)
        if (auto started = co_await start_helper(std::move(plan)); !started)
            co_return std::move(started).error();
    co_return Result<void>{};
}

asio::awaitable<Result<void>> Vm::Impl::start_helper(launcher::detail::HelperSpec plan) {
    std::vector<unsigned> affinity;
    if (placement_.pinned())
        affinity.assign(placement_.emulator.begin(), placement_.emulator.end());
    std::weak_ptr<Impl> weak = weak_from_this();
    auto helper = std::make_shared<launcher::detail::Helper>(ex_, std::move(plan));
    helpers_.push_back(helper);
    // Named, not a temporary in the co_await (see Helper::start).
    const std::function<void(int)> on_exit = [weak, raw = helper.get()](int status) {
        if (auto self = weak.lock()) self->on_helper_exit(*raw, status);
    };
    // A helper started while the VM runs gets the launch's plan within what qshim still holds.
    const launcher::detail::SandboxPlan sandbox = launcher::detail::within_current_credentials(
        *helper_sandbox_, launcher::detail::current_credentials());
    auto started = co_await helper->start(sandbox, affinity, options_.helper_timeout, on_exit);
    if (!started) co_return std::move(started).error();
    emit("helper-started", {{"name", helper->spec().name},
                            {"device", helper->spec().device},
                            {"pid", helper->pid()},
                            {"argv", helper->spec().argv}});
    co_return Result<void>{};
}

asio::awaitable<Result<std::string>> Vm::Impl::start_disk_helper(spec::Disk disk) {
    if (!helper_sandbox_) co_return make_error(Errc::state, "the VM has not started its helpers");
    // Planned as a VM with this disk alone would be: the same argv, the same checks.
    spec::VmSpec alone = live_.spec;
    alone.disks = {disk};
    alone.filesystems.clear();
    alone.interfaces.clear();
    auto planned = launcher::detail::plan_helpers(alone, state_dir(), helper_binaries());
    if (!planned) co_return std::move(planned).error();
    const std::string socket = planned->front().socket;
    auto started = co_await start_helper(std::move(planned->front()));
    if (!started) {
        // A helper that never served is dropped at once (its folder went with its failure).
        helpers_.pop_back();
        co_return std::move(started).error();
    }
    co_return socket;
}

asio::awaitable<void> Vm::Impl::stop_disk_helper(std::string disk) {
    const std::string device = fmt::format("disks[{}]", disk);
    for (size_t i = 0; i < helpers_.size(); ++i) {
        if (helpers_[i]->spec().device != device) continue;
        auto helper = helpers_[i];
        helpers_.erase(helpers_.begin() + static_cast<long>(i));
        co_await helper->stop(helper_stop_grace);
        co_return;
    }
}

// A helper that ends on its own takes its device with it; the VM goes on (docs/helpers.md).
// Some helpers end by themselves when QEMU closes its end (virtiofsd does, as QEMU exits or
// stops its devices), which may be seen before QEMU's own exit: that is no failure, so a helper's
// end counts only if QEMU is still running a moment later.
void Vm::Impl::on_helper_exit(const launcher::detail::Helper& helper, int status) {
    for (const auto& h : helpers_)
        if (h.get() == &helper) {
            auto self = shared_from_this();
            auto held = h;
            qshim::detail::spawn(ex_, report_helper_exit(self, held, status),
                                 "reporting a helper's exit");
            return;
        }
}

asio::awaitable<void> Vm::Impl::report_helper_exit(std::shared_ptr<Impl> self,
                                                   std::shared_ptr<launcher::detail::Helper> helper,
                                                   int status) {
    const bool qemu_ended = co_await self->qemu_reaped_.wait(helper_exit_settle);
    const auto& spec = helper->spec();
    if (qemu_ended || self->phase_ == launcher::detail::Phase::exited) {
        log::write("launcher", log::Level::info,
                   fmt::format("{} {} with QEMU", spec.name, helper->description()));
        co_return;
    }
    json data{{"name", spec.name},
              {"device", spec.device},
              {"pid", helper->pid()},
              {"status", helper->description()}};
    if (WIFEXITED(status)) data["code"] = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) data["signal"] = WTERMSIG(status);
    log::write("launcher", log::Level::error,
               fmt::format("{} (serving {}) {}: the device no longer answers the guest", spec.name,
                           spec.device, helper->description()));
    self->emit("helper-exited", std::move(data));
}

// QEMU is gone (or never started): its helpers go too (those that died already still leave a
// folder to remove), then the VM has ended.
void Vm::Impl::finish_exit() {
    if (helpers_.empty()) {
        exited_.set();
        return;
    }
    std::weak_ptr<Impl> weak = weak_from_this();
    auto self = shared_from_this();
    qshim::detail::spawn(ex_, stop_helpers(self), "stopping helper processes",
                         [weak](const std::string&) {
                             if (auto self = weak.lock()) self->exited_.set();
                         });
}

asio::awaitable<void> Vm::Impl::stop_helpers(std::shared_ptr<Impl> self) {
    // In reverse order of starting, each given its grace.
    const auto helpers = self->helpers_;
    for (size_t i = helpers.size(); i-- > 0;) {
        const auto& helper = helpers[i];
        co_await helper->stop(helper_stop_grace);
    }
    self->helpers_.clear();
    self->exited_.set();
}

void Vm::Impl::kill_helpers() {
    for (auto& h : helpers_) h->kill();
}

}  // namespace qshim
