// bench/topology: how long planning takes for specs of 10, 50 and 200 devices.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>
#include <vector>

using namespace qshim;
using Clock = std::chrono::steady_clock;

namespace {

// virtio, scsi and sata disks, NICs and host devices in proportions a big VM could have.
spec::VmSpec make_spec(unsigned devices) {
    spec::VmSpec s;
    s.name = "bench";
    s.source_file = "bench.yaml";
    unsigned virtio = std::min(devices * 3 / 10, 60u), nics = std::min(devices / 10, 28u),
             sata = devices >= 50 ? 4 : 0;
    unsigned hostdevs = devices >= 200 ? 4 : 0;
    unsigned scsi = devices - virtio - nics - sata - hostdevs;
    auto disk = [&s](spec::DiskBus bus) {
        spec::Disk d;
        d.name = fmt::format("d{}", s.disks.size());
        d.serial = d.name;
        d.path = "/images/" + d.name;
        d.bus = bus;
        s.disks.push_back(d);
    };
    for (unsigned i = 0; i < virtio; ++i) disk(spec::DiskBus::virtio);
    for (unsigned i = 0; i < scsi; ++i) disk(spec::DiskBus::scsi);
    for (unsigned i = 0; i < sata; ++i) disk(spec::DiskBus::sata);
    for (unsigned i = 0; i < nics; ++i) {
        spec::Interface n;
        n.name = fmt::format("n{}", i);
        n.mac = spec::default_mac(s.name, n.name);
        s.interfaces.push_back(n);
    }
    for (unsigned i = 0; i < hostdevs; ++i)
        s.host_devices.push_back({fmt::format("h{}", i), {0, uint8_t(0x20 + i), 0, 0}, {}});
    s.hotplug = {4, 4};
    return s;
}

struct Stats {
    double min, median, max;
};

template <typename F>
Stats time_us(F&& f, int runs) {
    std::vector<double> samples;
    for (int i = 0; i < runs; ++i) {
        auto t0 = Clock::now();
        f();
        samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::sort(samples.begin(), samples.end());
    return {samples.front(), samples[samples.size() / 2], samples.back()};
}

}  // namespace

int main() {
    fmt::print("{:>8} {:>8} | {:>28} | {:>28}\n", "devices*", "runs", "plan() us (min/median/max)",
               "plan+argv us (min/median/max)");
    for (unsigned n : {10u, 50u, 200u}) {
        auto s = make_spec(n);
        auto probe = topology::plan(s);
        if (!probe) {
            fmt::print(stderr, "spec of {} devices does not plan: {}\n", n, probe.error().what());
            return 1;
        }
        const int runs = 2000;
        auto plan = time_us([&] { (void)topology::plan(s); }, runs);
        auto both = time_us(
            [&] {
                auto t = topology::plan(s);
                (void)launcher::build_command(s, *t);
            },
            runs);
        fmt::print("{:>8} {:>8} | {:>8.1f} {:>9.1f} {:>9.1f} | {:>8.1f} {:>9.1f} {:>9.1f}\n",
                   probe->devices.size(), runs, plan.min, plan.median, plan.max, both.min,
                   both.median, both.max);
    }
    fmt::print("* devices in the topology, built-in ones (rng, SCSI controller) included\n");
    fmt::print("target: planning 200 devices well under 1000 us\n");
    return 0;
}
