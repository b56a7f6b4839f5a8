// The error type every public qshim function reports instead of throwing.
#pragma once

#include <qshim/export.hpp>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace qshim {

// One condition per value; the CLI maps these to its documented exit codes.
enum class Errc {
    invalid_spec = 1,  // the spec failed to load or validate; see Error::diagnostics
    io,                // a file or socket operation failed
    topology,          // the spec cannot be laid out on the machine (capacity, pins)
    qmp,               // QEMU answered a QMP command with an error; see Error::qmp_class
    protocol,          // the QMP peer broke the protocol
    launch,            // QEMU could not be started or rejected its command line
    timeout,           // a deadline passed
    interrupted,       // the connection closed while the operation was pending
    state,             // the operation is not allowed in the current state
    not_found,         // a named object does not exist
    conflict,          // a name or address is already taken
    unsupported,       // valid request this build or machine cannot do
    internal,          // a bug in qshim
};

QSHIM_API const char* to_string(Errc code);

// A finding about one field of one input file, printed as FILE:LINE:COL: path: reason.
struct Diagnostic {
    std::string file;
    int line = 0;  // 1-based; 0 when the position is unknown
    int column = 0;
    std::string path;  // e.g. "disks[1].format"; empty for document-level problems
    std::string reason;
};

QSHIM_API std::string to_string(const Diagnostic& d);

struct Error {
    Errc code = Errc::internal;
    std::string message;                  // what went wrong, with the object it concerns
    std::string context;                  // what we were doing, e.g. "loading spec vm.yaml"
    std::string qmp_class;                // QMP error class, when QEMU reported the error
    std::vector<Diagnostic> diagnostics;  // every problem found, for invalid_spec

    // "context: message" (or just the message), one line.
    QSHIM_API std::string what() const;
};

QSHIM_API Error make_error(Errc code, std::string message, std::string context = {});

// Either a value or an Error. Functions returning it are [[nodiscard]] by the class attribute.
template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { return std::get<1>(v_); }
    Error&& error() && { return std::get<1>(std::move(v_)); }

  private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const& { return error_; }
    Error&& error() && { return std::move(error_); }

  private:
    Error error_;
    bool ok_ = true;
};

}  // namespace qshim
