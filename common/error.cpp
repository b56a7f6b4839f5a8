// Formatting of qshim::Error and qshim::Diagnostic.
#include <fmt/format.h>

#include <qshim/error.hpp>

namespace qshim {

const char* to_string(Errc code) {
    switch (code) {
        case Errc::invalid_spec:
            return "invalid spec";
        case Errc::io:
            return "I/O error";
        case Errc::topology:
            return "topology error";
        case Errc::qmp:
            return "QMP error";
        case Errc::protocol:
            return "QMP protocol error";
        case Errc::launch:
            return "launch failure";
        case Errc::timeout:
            return "timed out";
        case Errc::interrupted:
            return "interrupted";
        case Errc::state:
            return "wrong state";
        case Errc::not_found:
            return "not found";
        case Errc::conflict:
            return "conflict";
        case Errc::unsupported:
            return "unsupported";
        case Errc::internal:
            return "internal error";
    }
    return "unknown error";
}

std::string to_string(const Diagnostic& d) {
    std::string out = d.file.empty() ? std::string("<input>") : d.file;
    if (d.line > 0) out += fmt::format(":{}:{}", d.line, d.column);
    out += ": ";
    if (!d.path.empty()) out += d.path + ": ";
    out += d.reason;
    return out;
}

std::string Error::what() const {
    std::string out = context.empty() ? message : context + ": " + message;
    if (!qmp_class.empty()) out += " [" + qmp_class + "]";
    return out;
}

Error make_error(Errc code, std::string message, std::string context) {
    Error e;
    e.code = code;
    e.message = std::move(message);
    e.context = std::move(context);
    return e;
}

}  // namespace qshim
