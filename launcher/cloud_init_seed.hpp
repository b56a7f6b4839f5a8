// The NoCloud seed of a spec's cloudInit: its files, and the ISO 9660 image that carries them.
#pragma once

#include <map>
#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>

namespace qshim::launcher::detail {

// The seed's files by name: user-data and meta-data always (NoCloud needs both), network-config
// when given. meta-data gains `instance-id` (derived from the VM name and every file's content,
// so a changed seed runs cloud-init again) and `local-hostname` (the VM name) unless it sets
// them. Errc::invalid_spec when meta-data is not a YAML map.
Result<std::map<std::string, std::string>> seed_files(const spec::CloudInit& cloud_init,
                                                      std::string_view vm_name);

// An ISO 9660 image with Joliet and Rock Ridge, volume id "cidata", holding `files`. The same
// files give the same bytes: every timestamp, owner and mode is fixed.
Result<std::string> seed_image(const std::map<std::string, std::string>& files);

}  // namespace qshim::launcher::detail
