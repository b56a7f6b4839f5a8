// ISO 9660 images of a few small files, as cloud-init seeds are: written in memory with libisofs.
#pragma once

#include <map>
#include <qshim/error.hpp>
#include <string>
#include <string_view>

namespace qshim::launcher::detail {

// An ISO 9660 image with Joliet and Rock Ridge and volume id `volume_id`, holding `files` by
// path: "a/b/c" puts c in folder b in folder a. The same input gives the same bytes: every
// timestamp, owner and mode is fixed.
Result<std::string> iso_image(std::string_view volume_id,
                              const std::map<std::string, std::string>& files);

}  // namespace qshim::launcher::detail
