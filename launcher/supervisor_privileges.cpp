// lock_down_supervisor(): what qshim itself gives up once QEMU runs.
#include <cap-ng.h>
#include <fmt/format.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstring>
#include <qshim/launcher.hpp>
#include <vector>

#include "launcher/device_json.hpp"

namespace qshim::launcher {

SupervisorNeeds supervisor_needs(const spec::VmSpec& spec) {
    // Only a VM with shared RAM takes vhost-user disks while it runs (launcher/hotplug.cpp).
    return SupervisorNeeds{detail::shares_memory(spec)};
}

Result<void> lock_down_supervisor(const SupervisorNeeds& needs) {
    const std::string context = "dropping qshim's own privileges";
    // Why each is kept: see the header. Everything else (CAP_SYS_ADMIN, CAP_NET_ADMIN,
    // CAP_SYS_PTRACE, CAP_CHOWN unless needed, ...) qshim needs at most before QEMU starts.
    std::vector<unsigned> kept{CAP_KILL, CAP_SETUID, CAP_SETGID, CAP_DAC_OVERRIDE, CAP_SYS_NICE};
    if (needs.helpers_while_running) kept.push_back(CAP_CHOWN);
    if (capng_get_caps_process() != 0)
        return make_error(Errc::internal, "reading qshim's capabilities failed", context);
    std::vector<bool> held(kept.size());
    for (size_t i = 0; i < kept.size(); ++i)
        held[i] = capng_have_capability(CAPNG_PERMITTED, kept[i]) == 1;
    // The bounding set can only shrink with CAP_SETPCAP; asking without it fails the whole call.
    const bool bounding = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) == 1;
    capng_clear(CAPNG_SELECT_ALL);
    for (size_t i = 0; i < kept.size(); ++i)
        if (held[i])
            capng_update(
                CAPNG_ADD,
                static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
                kept[i]);
    // The bounding set goes first, while CAP_SETPCAP is still held; ambient ones go with it.
    auto caps = static_cast<capng_select_t>(CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT);
    if (int rc = capng_apply(bounding ? CAPNG_SELECT_ALL : caps); rc != 0)
        return make_error(Errc::internal,
                          fmt::format("libcap-ng could not apply the capability sets ({})", rc),
                          context);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return make_error(Errc::internal,
                          fmt::format("clearing ambient capabilities: {}", std::strerror(errno)),
                          context);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return make_error(Errc::internal, fmt::format("no_new_privs: {}", std::strerror(errno)),
                          context);
    return {};
}

}  // namespace qshim::launcher
