// An asynchronous QMP client on boost.asio: many commands in flight, events, deadlines.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <string>
#include <vector>

namespace qshim::qmp {

using Json = nlohmann::json;
using Duration = std::chrono::milliseconds;

// The connection's run state. Calls made in the wrong state fail with Errc::state and a message
// naming the current and the required state.
enum class State { idle, connecting, running, disconnected };
QSHIM_API const char* to_string(State state);

struct Event {
    std::string name;
    Json data;       // the event's "data" member (an empty object when absent)
    Json timestamp;  // {"seconds": ..., "microseconds": ...}
};

struct ClientOptions {
    Duration command_timeout{30'000};  // default deadline of every command
    Duration connect_timeout{10'000};  // greeting + qmp_capabilities
    // A QMP message larger than this is a protocol error (QEMU's own python client and libvirt
    // use 10 MiB; query-named-block-nodes on a big VM is the largest real reply).
    std::size_t max_message_bytes = 10u << 20;
};

struct EventFilter {
    std::vector<std::string> names;               // empty: every event
    std::function<bool(const Event&)> predicate;  // optional extra condition
};

// A bounded queue of the events matching one filter. When full, the oldest event is dropped
// and counted: a slow listener never blocks the connection or grows without bound.
// Bound to the client's executor.
class QSHIM_API EventListener {
  public:
    virtual ~EventListener() = default;
    // The next queued event, waiting until one arrives, the deadline passes (Errc::timeout) or
    // the connection closes (Errc::interrupted).
    virtual boost::asio::awaitable<Result<Event>> next(Duration timeout) = 0;
    virtual std::optional<Event> try_next() = 0;
    virtual std::size_t size() const = 0;
    virtual std::size_t dropped() const = 0;
};

// Bound to one executor (use a strand, or a single-threaded io_context): all calls must be made
// from it. Not thread-safe. Never throws: every failure is a Result.
class QSHIM_API Client {
  public:
    explicit Client(boost::asio::any_io_executor executor, ClientOptions options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Takes ownership of a connected stream socket (one end of a socketpair whose other end
    // QEMU inherited as -chardev socket,fd=N: no socket path, no race), reads the greeting and
    // negotiates capabilities. Returns the greeting's "QMP" member (version, capabilities).
    boost::asio::awaitable<Result<Json>> connect_fd(int fd);
    // The same over a unix socket path.
    boost::asio::awaitable<Result<Json>> connect_path(std::string path);

    // Runs a command. Many may be in flight at once; replies are matched by id. On QMP error the
    // Error carries code Errc::qmp, qmp_class (e.g. "GenericError", "DeviceNotFound") and the
    // description as message, and names the command in context. On timeout the command may
    // still run in QEMU; its late reply is discarded.
    boost::asio::awaitable<Result<Json>> execute(std::string command,
                                                 Json arguments = Json::object(),
                                                 std::optional<Duration> timeout = std::nullopt);
    // The same, passing `fd` along with the command (SCM_RIGHTS), for getfd and add-fd.
    // The caller keeps ownership of fd.
    boost::asio::awaitable<Result<Json>> execute_with_fd(
        std::string command, Json arguments, int fd,
        std::optional<Duration> timeout = std::nullopt);

    // Subscribe before executing what triggers the event (stop, then wait for STOP).
    std::shared_ptr<EventListener> listen(EventFilter filter, std::size_t capacity = 256);

    // Closes the connection; pending commands and waiting listeners fail with Errc::interrupted.
    void close();
    State state() const;
    // Why the connection ended (the peer closed it, a protocol violation, close()), with the
    // Errc telling which; nullopt until it has.
    std::optional<Error> close_reason() const;

    struct Stats {
        std::size_t commands_sent = 0;
        std::size_t late_replies = 0;     // replies to commands that had timed out
        std::size_t unknown_replies = 0;  // replies with an id we never sent
    };
    Stats stats() const;

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

// Waits on `listener` for the first event satisfying `match`, discarding others, until the
// deadline.
QSHIM_API boost::asio::awaitable<Result<Event>> wait_event(EventListener& listener,
                                                           std::function<bool(const Event&)> match,
                                                           Duration timeout);

}  // namespace qshim::qmp
