// Hot-plug and unplug of disks and NICs: placement in reserved ports, transactions, live state.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <qshim/qmp.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <vector>

#include "common/async_event.hpp"
#include "common/async_mutex.hpp"
#include "launcher/access_check.hpp"

namespace qshim::launcher::detail {

// Something QEMU may hold that the live state does not know: left by a rollback step that
// failed, or by a command whose outcome is unknown (it timed out, or the connection broke).
struct Stray {
    enum class Kind { device, block_node, netdev, chardev };
    Kind kind = Kind::device;
    std::string id;                           // QEMU id or node name
    std::optional<spec::PciAddress> address;  // a device: the hotplug port it may occupy
};
// "device data", "block-node f.data", "netdev net.n", "chardev vu.data"
std::string to_string(const Stray& stray);

// What the VM is now. Invariant: topology::plan(spec) == topology.
struct LiveState {
    spec::VmSpec spec;  // every device pinned; hotplug counts = ports of the class left free
    topology::Topology topology;
    std::map<std::string, std::shared_ptr<qshim::detail::AsyncEvent>>
        removing;               // "kind/name" -> done
    std::vector<Stray> strays;  // empty while QEMU and the live state agree

    bool has_device(topology::DeviceKind kind, const std::string& name) const {
        return topology.find_device(name, kind) != nullptr;
    }
};

// Builds the live state of a freshly planned VM: the spec resolved (every address pinned), so
// that removing a device can never move another when the live spec is planned again.
LiveState make_live_state(const spec::VmSpec& spec, const topology::Topology& topology);

class Hotplug {
  public:
    using Emit = std::function<void(const char* event, nlohmann::json data)>;
    // Whether the VM can be changed now; the Error (Errc::state) says why not.
    using CanChange = std::function<Result<void>()>;

    // `anchor` returns a reference that keeps the owner (and so this object, the QMP client and
    // the live state) alive; an unplug finishing in the background holds one.
    Hotplug(boost::asio::any_io_executor ex, qmp::Client& qmp, LiveState& live, Emit emit,
            CanChange can_change, std::function<std::shared_ptr<void>()> anchor);

    boost::asio::awaitable<Result<topology::Device>> add_disk(spec::Disk disk);
    boost::asio::awaitable<Result<topology::Device>> add_interface(spec::Interface nic);
    boost::asio::awaitable<Result<void>> remove(topology::DeviceKind kind, std::string name,
                                                std::chrono::milliseconds timeout);
    // A cdrom's disc: `medium` (a disk's path and format) goes in place of whatever the drive
    // holds, or nullopt ejects it. The drive's tray opens first: when the guest has locked it,
    // QEMU asks the guest to eject, and unless the guest opens it within `tray_wait` the change
    // is refused (Errc::conflict) with nothing changed; `force` opens it regardless.
    boost::asio::awaitable<Result<void>> change_medium(std::string name,
                                                       std::optional<spec::Disk> medium, bool force,
                                                       std::chrono::milliseconds tray_wait);
    // QMP DEVICE_DELETED for a device nobody is unplugging: the guest ejected it by itself.
    void device_deleted(const std::string& id);
    // The helper process of a hot-plugged storageDaemon disk (its qemu-storage-daemon): started
    // before the disk's chardev (returns the socket it listens on), stopped once QEMU let go of
    // it. The Vm owns the processes.
    struct Helpers {
        std::function<boost::asio::awaitable<Result<std::string>>(spec::Disk)> start;
        std::function<boost::asio::awaitable<void>(std::string)> stop;  // by disk name
    };
    void set_helpers(Helpers helpers) { helpers_ = std::move(helpers); }
    // Who QEMU runs as: a hot-plugged disk's image is checked as that uid before QEMU sees it.
    void set_qemu_identity(QemuIdentity who) { qemu_ = who; }
    // Mutations other than hotplug (pause, resume) take the same turn.
    boost::asio::awaitable<qshim::detail::AsyncMutex::Guard> lock() { return mutex_.lock(); }

  private:
    struct Plan {
        spec::VmSpec spec;
        topology::Topology topology;
        topology::Device device;
    };
    // One forward step done (or maybe done) in QEMU, and how to take it back.
    struct Step {
        Stray object;
        bool confirmed = false;  // QEMU answered success; otherwise the outcome is unknown
    };

    Result<Plan> place(const std::string& cls, const std::optional<spec::PciAddress>& wanted,
                       const std::function<void(spec::VmSpec&, const spec::PciAddress&)>& add);
    boost::asio::awaitable<Result<topology::Device>> add_vhost_user_disk(spec::Disk disk,
                                                                         Plan plan);
    // The live spec with one device more, planned: its hotplug counts refreshed, and checked to
    // add no root port.
    Result<topology::Topology> plan_candidate(spec::VmSpec& candidate) const;
    // A scsi disk's LUN: its own `lun` when free, else the lowest free one.
    Result<Plan> place_lun(const spec::Disk& disk);
    // Opens the tray of cdrom `id` (see change_medium).
    boost::asio::awaitable<Result<void>> open_tray(const std::string& id, bool force,
                                                   std::chrono::milliseconds wait,
                                                   const std::string& context);
    Result<void> check_new_name(const std::string& name,
                                const std::vector<std::string>& qemu_ids) const;
    // Makes a successful plug the live state and announces it.
    topology::Device commit(Plan plan);
    // Runs one forward step; on failure rolls back `done` (and this step, when its outcome is
    // unknown) and returns the error the caller reports.
    boost::asio::awaitable<Result<void>> forward(std::vector<Step>& done, const char* command,
                                                 qmp::Json arguments, Stray object,
                                                 const std::string& what,
                                                 const std::string& context);
    // Undoes steps newest first. A step QEMU does not confirm gone becomes a stray, reported
    // (log and `diverged` event) and reconciled on the next change.
    boost::asio::awaitable<void> roll_back(std::vector<Step> done, const std::string& context);
    // Before a change: compares the strays with QEMU's own lists and removes what should not be
    // there. Never fails the change: what cannot be removed yet stays listed.
    boost::asio::awaitable<void> reconcile();
    // Deletes a device, block node or netdev; true when QEMU confirms it is gone (or was never
    // there). A device_del that QEMU accepts is not gone yet: the guest must release it.
    boost::asio::awaitable<bool> remove_object(const Stray& object, std::string& why);
    void report_strays(std::vector<Stray> added, const std::string& context,
                       const std::string& cause);
    std::shared_ptr<qmp::EventListener> listen_deleted(const std::string& id);
    // The device is gone from QEMU: remove its backend (what QEMU keeps becomes a stray) and
    // take it out of the live state. Holds the turn.
    boost::asio::awaitable<void> complete_removal(topology::Device device);
    boost::asio::awaitable<void> finish_removal(std::shared_ptr<void> anchor, std::string key,
                                                topology::Device device,
                                                std::shared_ptr<qmp::EventListener> deleted);

    boost::asio::any_io_executor ex_;
    qmp::Client& qmp_;
    LiveState& live_;
    QemuIdentity qemu_;
    Emit emit_;
    CanChange can_change_;
    Helpers helpers_;
    std::function<std::shared_ptr<void>()> anchor_;
    qshim::detail::AsyncMutex mutex_;
};

}  // namespace qshim::launcher::detail
