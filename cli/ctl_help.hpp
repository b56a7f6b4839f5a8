// The help texts of `qshim ctl` and its commands, each with the curl request it stands for.
#pragma once

namespace qshim::cli::ctl_help {

constexpr const char* main = R"(Usage: qshim ctl --api-socket PATH COMMAND [ARGS...]

Manage a VM that 'qshim run --api-socket PATH SPEC' serves: inspect it,
hot-plug and unplug disks and network interfaces, pause, resume or shut it
down, follow its lifecycle events. Each command is one HTTP request to the
control API (docs/api.md); the JSON answer is printed on stdout.

Commands:
  status                          the VM: state, pid, QEMU version, live spec
  topology                        the live PCI topology, as 'qshim topology'
  cpus                            each vCPU, IOThread and other QEMU thread
                                  with its thread id and host CPUs
  disk add --name N --path P --format raw|qcow2 [...]
                                  hot-plug a disk into a free hotplug port
  disk remove NAME [--timeout S]  unplug a disk once the guest lets go of it
  disk media NAME (--path P --format F | --eject) [--force]
                                  insert or eject a cdrom's disc
  interface add --name N (--user | --tap IF | --stream SOCKET) [...]
                                  hot-plug a network interface
  interface remove NAME [--timeout S]
                                  unplug a network interface
  pause | resume                  stop or continue the guest's vCPUs
  shutdown [--timeout S]          graceful stop: ACPI power button, then force
  events                          print lifecycle events as JSON lines until
                                  the server stops (Ctrl-C to leave)
  console                         attach to the guest's serial console
                                  (Ctrl-] detaches)
  migrate URI [--wait] [...]      live-migrate the VM to a 'qshim run
                                  --incoming' target (docs/migration.md)
  migration                       where the migration is: state, percent,
                                  bytes, dirty rate, expected downtime
  migrate-cancel                  cancel it; the guest runs on here

Options:
  --api-socket PATH   the socket of 'qshim run --api-socket' (required; may
                      also follow the command)
  -h, --help          this help; 'qshim ctl COMMAND --help' for a command

Exit status:
  0  success
  1  the API answered with an error; its message, and one 'field: reason'
     line per invalid field, are printed on stderr
  2  usage error
  3  the socket cannot be reached (no server there, wrong path, permission)

Examples:
  qshim ctl --api-socket /run/vm1.sock status
  qshim ctl --api-socket /run/vm1.sock disk add --name data --path data.qcow2 --format qcow2
  qshim ctl --api-socket /run/vm1.sock disk remove data --timeout 10
The same requests with curl:
  curl --unix-socket /run/vm1.sock http://localhost/v1/vm
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/disks \
       -d '{"name": "data", "path": "/home/me/data.qcow2", "format": "qcow2"}'
  curl --unix-socket /run/vm1.sock -X DELETE 'http://localhost/v1/vm/disks/data?timeoutSeconds=10'
)";

constexpr const char* status = R"(Usage: qshim ctl --api-socket PATH status

Print the VM as the API sees it: name, state (running, paused, stopping,
exited), QEMU's pid and version, the devices being unplugged ("removing"),
and the live spec: the spec with every device pinned where it is, hot-plugged
devices included. Saved as a file, the live spec starts the same VM again.

Example:
  qshim ctl --api-socket /run/vm1.sock status
  curl --unix-socket /run/vm1.sock http://localhost/v1/vm
)";

constexpr const char* topology = R"(Usage: qshim ctl --api-socket PATH topology

Print the live PCI topology: every device's guest address, hot-plugged ones
included, and the hotplug ports still free. Same shape as 'qshim topology'
(docs/topology.md).

Example:
  qshim ctl --api-socket /run/vm1.sock topology
  curl --unix-socket /run/vm1.sock http://localhost/v1/vm/topology
)";

constexpr const char* cpus = R"(Usage: qshim ctl --api-socket PATH cpus

Print where QEMU's threads run: each vCPU and IOThread, and every other thread
of QEMU ("emulator"), with its thread id, its name, the host CPUs the kernel
lets it run on now ("cpus") and, for a pinned VM (cpu.dedicated or
cpu.pinning), the CPUs its placement gives it ("planned"). "placement" is
unpinned, placed, or failed (the cpuset changed and cannot hold the VM; "error"
says why). docs/placement.md explains the placement.

Example:
  qshim ctl --api-socket /run/vm1.sock cpus
  curl --unix-socket /run/vm1.sock http://localhost/v1/vm/cpus
)";

constexpr const char* disk_add =
    R"(Usage: qshim ctl --api-socket PATH disk add --name N --path P --format raw|qcow2
                                      [--bus virtio|scsi] [--lun N] [--cdrom]
                                      [--serial S] [--read-only]
                                      [--pci-address DDDD:BB:SS.F] [--iothread N]

Hot-plug a disk: a virtio disk into the first free disk hotplug port (or the
port at --pci-address), a scsi disk as the lowest free LUN (or --lun) of the
VM's virtio-scsi controller (the VM needs one: a scsi disk in its spec, or
hotplug.scsi: true). The fields and rules are those of a disks[] entry of the
spec (docs/spec.md); a relative --path is made absolute against the current
folder. Prints the placed device (its guest address, LUN and serial).

Options:
  --name N            device name: a DNS label starting with a letter, unique
  --path P            the image file (a --cdrom may leave it out: an empty drive)
  --format raw|qcow2  the image format (never probed)
  --bus virtio|scsi   virtio (the default) takes a PCIe hotplug port; scsi a LUN
  --lun N             a free LUN (0-255) of the SCSI controller, for --bus scsi
  --cdrom             a cdrom drive (--bus scsi): read-only, its disc changed
                      with 'disk media'
  --serial S          what the guest sees as serial (default: the name)
  --read-only         open the image read-only
  --pci-address A     a free hotplug port's device address, e.g. 0000:10:00.0
  --iothread N        run the disk's I/O on IOThread N (the spec's iothreads)

Errors: 400 invalid field, 409 name taken, no free disk port or LUN, or no
SCSI controller.

Examples:
  qshim ctl --api-socket /run/vm1.sock disk add --name data --path /var/lib/vm1/data.qcow2 --format qcow2
  qshim ctl --api-socket /run/vm1.sock disk add --name lun3 --bus scsi --path /var/lib/vm1/l.raw --format raw
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/disks \
       -H 'Content-Type: application/json' \
       -d '{"name": "data", "path": "/var/lib/vm1/data.qcow2", "format": "qcow2"}'
)";

constexpr const char* disk_remove =
    R"(Usage: qshim ctl --api-socket PATH disk remove NAME [--timeout SECONDS]

Unplug a disk: ask the guest to release it, wait up to --timeout seconds
(default 30, at most 3600) for it to do so, then close the image. If the
guest does not let go in time the answer is 504 and the disk stays listed
under "removing" in 'status'; it goes as soon as the guest releases it.

Example:
  qshim ctl --api-socket /run/vm1.sock disk remove data --timeout 10
  curl --unix-socket /run/vm1.sock -X DELETE 'http://localhost/v1/vm/disks/data?timeoutSeconds=10'
)";

constexpr const char* disk_media =
    R"(Usage: qshim ctl --api-socket PATH disk media NAME --path P --format raw|qcow2 [--force]
       qshim ctl --api-socket PATH disk media NAME --eject [--force]

Change the disc in cdrom NAME: insert the image P (in place of whatever the
drive holds), or eject it and leave the drive empty. The image is checked and
opened before the tray opens, so an image QEMU cannot read changes nothing.

A guest using the disc (mounted, or a program holding the drive) locks the
tray. qshim then asks the guest to eject, as a drive's button would, and if
the tray stays shut for 3 s the answer is 409 and nothing changed. --force
opens the tray regardless: the guest loses the disc under its feet.

Options:
  --path P            the image to insert; relative: to the current folder
  --format raw|qcow2  its format (never probed)
  --eject             take the disc out instead
  --force             open the tray even when the guest has locked it

Errors: 404 no such disk, 400 invalid field or an image QEMU cannot read,
409 the tray is locked, or NAME is not a cdrom.

Examples:
  qshim ctl --api-socket /run/vm1.sock disk media cd --path /images/tools.iso --format raw
  qshim ctl --api-socket /run/vm1.sock disk media cd --eject
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/disks/cd/media \
       -d '{"path": "/images/tools.iso", "format": "raw"}'
)";

constexpr const char* interface_add = R"(Usage: qshim ctl --api-socket PATH interface add --name N
                                      (--user | --tap IFNAME | --stream SOCKET)
                                      [--model virtio|e1000e] [--mac MAC]
                                      [--pci-address DDDD:BB:SS.F]

Hot-plug a network interface into the first free interface hotplug port. The
fields and rules are those of an interfaces[] entry of the spec (docs/spec.md);
a relative --stream path is made absolute against the current folder. Prints
the placed device (its guest address and MAC).

Options:
  --name N            device name: a DNS label starting with a letter, unique
  --user              QEMU user-mode networking (for testing)
  --tap IFNAME        an existing host tap device
  --stream SOCKET     a stream socket such as passt's
  --model M           virtio (default) or e1000e
  --mac MAC           unicast MAC (default: derived from VM and device name)
  --pci-address A     a free hotplug port's device address

Errors: 400 invalid field, 409 name or MAC taken or no free interface port.

Example:
  qshim ctl --api-socket /run/vm1.sock interface add --name net1 --tap tap-vm1
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/interfaces \
       -H 'Content-Type: application/json' \
       -d '{"name": "net1", "backend": {"type": "tap", "name": "tap-vm1"}}'
)";

constexpr const char* interface_remove =
    R"(Usage: qshim ctl --api-socket PATH interface remove NAME [--timeout SECONDS]

Unplug a network interface: ask the guest to release it, wait up to --timeout
seconds (default 30, at most 3600), then remove its backend. On timeout the
answer is 504 and the interface stays listed under "removing" in 'status'.

Example:
  qshim ctl --api-socket /run/vm1.sock interface remove net1
  curl --unix-socket /run/vm1.sock -X DELETE http://localhost/v1/vm/interfaces/net1
)";

constexpr const char* pause = R"(Usage: qshim ctl --api-socket PATH pause
       qshim ctl --api-socket PATH resume

Stop the guest's vCPUs, or let them run again. Prints the new state.

Example:
  qshim ctl --api-socket /run/vm1.sock pause
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/pause
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/resume
)";

constexpr const char* shutdown = R"(Usage: qshim ctl --api-socket PATH shutdown [--timeout SECONDS]

Ask the VM to stop, as SIGTERM to 'qshim run' does: press the ACPI power
button, wait up to --timeout seconds (default: the spec's
lifecycle.gracePeriodSeconds) for the guest to power off, then make QEMU quit.
Answers at once ({"state": "stopping"}); follow 'events' to see it end.

Example:
  qshim ctl --api-socket /run/vm1.sock shutdown --timeout 10
  curl --unix-socket /run/vm1.sock -X POST http://localhost/v1/vm/shutdown \
       -H 'Content-Type: application/json' -d '{"timeoutSeconds": 10}'
)";

constexpr const char* events = R"(Usage: qshim ctl --api-socket PATH events

Print the VM's lifecycle events (docs/events.md) as JSON lines as they happen,
until the API server stops (the VM has exited) or Ctrl-C. Only events from
the moment of connecting are sent. A reader too slow to keep up gets an
"events-dropped" line counting what it missed.

Example:
  qshim ctl --api-socket /run/vm1.sock events
  curl --no-buffer --unix-socket /run/vm1.sock http://localhost/v1/events
)";

constexpr const char* console = R"(Usage: qshim ctl --api-socket PATH console

Attach to the guest's serial console: what the guest writes appears here, what
you type goes to the guest. On a terminal the terminal is in raw mode, so every
key goes to the guest (Ctrl-C too); Ctrl-] detaches and leaves the VM running.
With stdin not a terminal, input is sent as it comes and the console stays
open after it ends, until the VM ends or Ctrl-].

One client at a time: a second one is refused (exit 1) until the first
detaches. 'qshim run --api-socket' holds the console for this unless the spec
has serial.socket, which hands the console to whoever connects there.

The stream is GET /v1/vm/console upgraded with 'Upgrade: qshim-console'
(docs/api.md).

Example:
  qshim ctl --api-socket /run/vm1.sock console
)";

constexpr const char* migrate = R"(Usage: qshim ctl --api-socket PATH migrate URI [options]

Live-migrate the VM to a qshim started as its target with
'qshim run --incoming ADDRESS LIVE-SPEC', where LIVE-SPEC is this VM's live
spec ('qshim ctl status' prints it as .spec). URI is unix:PATH (the target's
socket, or a relay that carries the stream to it) or tcp:HOST:PORT. The two
qshim compare their guest ABI first; QEMU sends RAM only when they match.
On success the guest runs on the target and this VM's qshim exits with
status 7 (migrated); on any failure the guest runs on here as before.

Options:
  --wait                      follow the migration to its end: a progress line
                              on a terminal, the migration-* events as JSON
                              lines otherwise; exit 0 when it completed, 1
                              when it failed or was cancelled
  --downtime-limit MS         the longest pause at switchover (default 300)
  --max-bandwidth MIBPS       limit the stream (default: unlimited)
  --auto-converge             let QEMU slow vCPUs that dirty RAM too fast
  --postcopy                  allow post-copy: refused in this version (the
                              sandbox denies userfaultfd; docs/migration.md)
  --completion-timeout S      default 150 per GiB of RAM (at least 150)
  --progress-timeout S        no new low of remaining bytes for S seconds
                              escalates (default 150); see docs/migration.md
  --tls-dir DIR               TLS: ca-cert.pem, client-cert.pem, client-key.pem
                              (readable by QEMU's uid); the target must run
                              with --tls-dir too
  --tls-hostname NAME         the name in the target's certificate (default:
                              the host of a tcp: URI)

Example:
  qshim ctl --api-socket /run/vm1.sock migrate unix:/run/migrate.sock --wait
  curl --unix-socket /run/vm1.sock -X POST -d '{"uri":"unix:/run/m.sock"}' \
      http://localhost/v1/vm/migrate
)";

constexpr const char* migration = R"(Usage: qshim ctl --api-socket PATH migration

Print where the VM's migration is (docs/api.md, GET /v1/vm/migration): state
(none, connecting, handshake, active, switchover, confirming, completed,
failed, cancelling, cancelled), percent, transferred, remaining and total
bytes, dirty rate, expected downtime, iterations, the last convergence step,
and when completed the setup, total and downtime figures.

Example:
  curl --unix-socket /run/vm1.sock http://localhost/v1/vm/migration
)";

constexpr const char* migrate_cancel = R"(Usage: qshim ctl --api-socket PATH migrate-cancel

Cancel the migration under way; the guest runs on here. Refused once QEMU has
sent everything and the target is deciding (state confirming).

Example:
  curl --unix-socket /run/vm1.sock -X DELETE http://localhost/v1/vm/migration
)";

}  // namespace qshim::cli::ctl_help
