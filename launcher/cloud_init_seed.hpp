// The seed of a spec's cloudInit: its files, and the ISO 9660 image that carries them.
#pragma once

#include <map>
#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>

namespace qshim::launcher::detail {

// The seed's files by path. NoCloud: user-data and meta-data always (NoCloud needs both),
// network-config when given. meta-data gains `instance-id` (derived from the VM name and every
// file's content, so a changed seed runs cloud-init again) and `local-hostname` (the VM name)
// unless it sets them. ConfigDrive: openstack/latest/ user_data, meta_data.json (the same
// meta-data as JSON, instance-id as "uuid" and local-hostname as "hostname") and, when given,
// network_data.json. Errc::invalid_spec when meta-data or the network config is not a YAML map.
Result<std::map<std::string, std::string>> seed_files(const spec::CloudInit& cloud_init,
                                                      std::string_view vm_name);

// The volume id cloud-init looks for: "cidata" (NoCloud) or "config-2" (ConfigDrive).
const char* seed_label(const spec::CloudInit& cloud_init);

// The seed's files in an ISO 9660 image labelled seed_label(). The same spec gives the same
// bytes.
Result<std::string> seed_image(const spec::CloudInit& cloud_init, std::string_view vm_name);

}  // namespace qshim::launcher::detail
