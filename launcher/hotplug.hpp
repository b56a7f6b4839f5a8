// Hot-plug and unplug of disks and NICs: placement in reserved ports, transactions, live state.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <qshim/qmp.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>

#include "common/async_event.hpp"
#include "common/async_mutex.hpp"

namespace qshim::launcher::detail {

// What the VM is now. Invariant: topology::plan(spec) == topology.
struct LiveState {
    spec::VmSpec spec;  // every device pinned; hotplug counts = ports of the class left free
    topology::Topology topology;
    std::map<std::string, std::shared_ptr<qshim::detail::AsyncEvent>>
        removing;  // "kind/name" -> done
};

// Builds the live state of a freshly planned VM: the spec resolved (every address pinned), so
// that removing a device can never move another when the live spec is planned again.
LiveState make_live_state(const spec::VmSpec& spec, const topology::Topology& topology);

class Hotplug {
  public:
    using Emit = std::function<void(const char* event, nlohmann::json data)>;

    // `anchor` returns a reference that keeps the owner (and so this object, the QMP client and
    // the live state) alive; an unplug finishing in the background holds one.
    Hotplug(boost::asio::any_io_executor ex, qmp::Client& qmp, LiveState& live, Emit emit,
            std::function<bool()> running, std::function<std::shared_ptr<void>()> anchor);

    boost::asio::awaitable<Result<topology::Device>> add_disk(spec::Disk disk);
    boost::asio::awaitable<Result<topology::Device>> add_interface(spec::Interface nic);
    boost::asio::awaitable<Result<void>> remove(topology::DeviceKind kind, std::string name,
                                                std::chrono::milliseconds timeout);
    // Mutations other than hotplug (pause, resume) take the same turn.
    boost::asio::awaitable<qshim::detail::AsyncMutex::Guard> lock() { return mutex_.lock(); }

  private:
    struct Plan {
        spec::VmSpec spec;
        topology::Topology topology;
        topology::Device device;
    };
    Result<Plan> place(const std::string& cls, const std::optional<spec::PciAddress>& wanted,
                       const std::function<void(spec::VmSpec&, const spec::PciAddress&)>& add);
    Result<void> check_new_name(const std::string& name) const;
    // Makes a successful plug the live state and announces it.
    topology::Device commit(Plan plan);
    boost::asio::awaitable<void> finish_removal(std::shared_ptr<void> anchor, std::string key,
                                                topology::Device device,
                                                std::shared_ptr<qmp::EventListener> deleted);

    boost::asio::any_io_executor ex_;
    qmp::Client& qmp_;
    LiveState& live_;
    Emit emit_;
    std::function<bool()> running_;
    std::function<std::shared_ptr<void>()> anchor_;
    qshim::detail::AsyncMutex mutex_;
};

}  // namespace qshim::launcher::detail
