// LineFramer: the QMP stream's newline framing with a size bound.
#include "qmp/framing.hpp"

namespace qshim::qmp::detail {

void LineFramer::append(std::string_view bytes) {
    if (failed_) return;
    // Drop taken lines before growing, so the buffer holds at most one line and one read.
    if (start_ > 0 && start_ >= buf_.size() / 2) {
        buf_.erase(0, start_);
        start_ = 0;
    }
    buf_.append(bytes);
}

LineFramer::Status LineFramer::next(std::string& line) {
    while (!failed_) {
        std::size_t nl = buf_.find('\n', start_ + scanned_);
        if (nl == std::string::npos) {
            scanned_ = buf_.size() - start_;
            // One byte of slack for the '\r' of a line that is exactly at the bound.
            if (scanned_ > max_ + 1) break;
            return Status::incomplete;
        }
        std::size_t end = nl;
        if (end > start_ && buf_[end - 1] == '\r') --end;
        std::size_t begin = start_;
        start_ = nl + 1;
        scanned_ = 0;
        if (end - begin > max_) break;
        if (end == begin) continue;  // an empty line carries no message
        line.assign(buf_, begin, end - begin);
        return Status::line;
    }
    failed_ = true;
    buf_.clear();
    buf_.shrink_to_fit();
    start_ = scanned_ = 0;
    return Status::too_long;
}

}  // namespace qshim::qmp::detail
