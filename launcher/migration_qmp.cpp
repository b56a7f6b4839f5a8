// The QMP arguments of a migration, shared by the source (vm_migrate.cpp) and the target
// (vm_incoming.cpp).
#include "launcher/migration_qmp.hpp"

namespace qshim::launcher::detail {

using nlohmann::json;

json capabilities_args(const std::vector<std::pair<const char*, bool>>& capabilities) {
    json caps = json::array();
    for (const auto& [name, on] : capabilities)
        caps.push_back({{"capability", name}, {"state", on}});
    return {{"capabilities", caps}};
}

json getfd_args() { return {{"fdname", migration_fd_name}}; }

json fd_uri_args() { return {{"uri", std::string("fd:") + migration_fd_name}}; }

json tls_object(const std::string& dir, const char* endpoint) {
    return {{"qom-type", "tls-creds-x509"},
            {"id", migration_tls_id},
            {"dir", dir},
            {"endpoint", endpoint},
            {"verify-peer", true}};
}

json tls_object_del_args() { return {{"id", migration_tls_id}}; }

bool qemu_migration_busy(std::string_view status) {
    // query-migrate's MigrationStatus values before one of none, completed, failed, cancelled.
    // postcopy-active is absent: post-copy is refused (docs/migration.md).
    for (std::string_view busy :
         {"setup", "wait-unplug", "active", "pre-switchover", "device", "cancelling"})
        if (status == busy) return true;
    return false;
}

}  // namespace qshim::launcher::detail
