// qshim convert: the spec a KubeVirt manifest becomes.
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "cli/common.hpp"

namespace qshim::cli {

namespace {

constexpr const char* help =
    R"(Usage: qshim convert [--json] [--pin-from DOMAIN.xml] [--volume-root KIND=DIR]...
                     MANIFEST

Print the qshim spec that a KubeVirt manifest (kubevirt.io/v1
VirtualMachineInstance, or a VirtualMachine's template) becomes, every field
written out. Every command that takes a spec takes the manifest itself too;
convert shows what they run, or keeps it as a spec to edit.

Each volume is found where KubeVirt's virt-launcher puts it in the VM's pod:
a containerDisk's image is /var/run/kubevirt/container-disks/disk_N.img (N:
the volume's index in spec.volumes), opened under a throw-away overlay; a
persistentVolumeClaim or dataVolume is /dev/VOLUME when that is a block
device, else /var/run/kubevirt-private/vmi-disks/VOLUME/disk.img; a
configMap, secret, serviceAccount or downwardAPI disk is an ISO image of its
folder, made at start. A field qshim does not support is an error naming it;
nothing is silently dropped. What qshim decides on its own is a note on
stderr: a volume no disk names gets a sata disk (KubeVirt's default), and a
volume that is not here to look at (converting on another host) is taken as
raw, or as a filesystem claim. docs/kubevirt.md maps every field.

A VM that ran under libvirt (KubeVirt's virt-launcher) keeps its guest ABI
with --pin-from: every disk and NIC (matched by KubeVirt's alias ua-NAME, a
NIC else by MAC), the SCSI controller, balloon and rng take the PCI address
or LUN that libvirt domain gave them, in libvirt's root-port layout
(machine.layout: libvirt). What the domain has and qshim's VM does not (a USB
controller, say) is listed on stderr: its place stays empty in the guest.

Options:
  --json               print JSON instead of YAML
  --pin-from DOMAIN.xml
                       pin every address from a libvirt domain XML
                       (virsh dumpxml of the VM)
)"
    R"(%VOLUME_ROOT%  -h, --help           show this help

Example:
  qshim convert --volume-root container-disks=./images vmi.yaml > vm.yaml
  virsh dumpxml default_myvm > myvm.xml
  qshim convert --pin-from myvm.xml vmi.yaml > vm.yaml

Exit status: 0 converted, 2 invalid manifest or usage.
)";

std::string help_text() {
    std::string text = help;
    text.replace(text.find("%VOLUME_ROOT%"), 13, volume_root_help);
    return text;
}

// Whether the file holds a KubeVirt manifest; a file that cannot be read is load_spec's to report.
bool is_manifest_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return !in || spec::is_kubevirt_manifest(ss.str());
}

}  // namespace

int cmd_convert(const std::vector<std::string>& argv) {
    if (wants_help(argv)) {
        fmt::print("{}", help_text());
        return exit_ok;
    }
    Args args(argv, {volume_root_option, "--pin-from"}, {"--json"});
    if (!args.ok()) return usage_error("convert", args.error());
    if (args.positional().size() != 1)
        return usage_error("convert", "expected exactly one MANIFEST file");
    auto options = load_options("convert", args);
    if (!options) return exit_invalid;
    const std::string& path = args.positional()[0];
    if (!is_manifest_file(path)) {
        fmt::print(stderr,
                   "qshim convert: {} is a qshim spec already (it has no apiVersion or kind); "
                   "convert takes a KubeVirt manifest\n",
                   path);
        return exit_invalid;
    }
    std::vector<std::string> notes;
    options->notes = &notes;
    if (args.has("--pin-from")) options->pin_from = *args.get("--pin-from");
    auto spec = load_or_report(path, *options);
    for (const auto& note : notes) fmt::print(stderr, "qshim convert: note: {}\n", note);
    if (!spec) return exit_invalid;
    // A manifest that converts but does not fit a machine is as invalid as a spec that does not.
    if (auto topo = topology::plan(*spec); !topo) {
        print_error(topo.error());
        return exit_invalid;
    }
    return print_or_report(args.has("--json") ? spec::to_json(*spec) : spec::to_yaml(*spec));
}

}  // namespace qshim::cli
