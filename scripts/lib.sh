# Shared by scripts/demo and scripts/test: install what is missing, build, build the test guest.
# Sourced, not run. Every step is idempotent: a second run only does what changed.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${QSHIM_BUILD_DIR:-$repo/build}
cache_dir=${QSHIM_CACHE_DIR:-$repo/.cache}
guest_dir=$cache_dir/guest

# Debian 12 packages: build tools and libraries, QEMU, and what the test guest is made from.
packages=(meson ninja-build g++ pkg-config python3
    libboost1.81-dev nlohmann-json3-dev libyaml-cpp-dev libseccomp-dev libcap-ng-dev libfmt-dev libisofs-dev catch2
    ovmf
    qemu-system-x86 qemu-utils passt busybox-static cpio clang-format clang libclang-rt-14-dev iproute2 valgrind
    podman runc debootstrap openssh-client)

# Each step says how far into the run it starts, so a slow step shows in any log. The start is
# the first script's, passed on to the scripts it runs (scripts/test runs scripts/fuzz-smoke).
: "${QSHIM_RUN_START:=$(date +%s)}"
export QSHIM_RUN_START
say() {
    local t=$(($(date +%s) - QSHIM_RUN_START))
    printf '\033[1m==> [%dm%02ds] %s\033[0m\n' $((t / 60)) $((t % 60)) "$*" >&2
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    # The test guest's kernel is fetched with apt-get download, which needs package lists.
    local need_lists=0
    apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || need_lists=1
    if [ ${#missing[@]} -eq 0 ] && [ $need_lists -eq 0 ]; then return; fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "qshim needs these Debian packages; as root, run:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    say "installing ${missing[*]:-package lists}"
    apt-get update -qq
    [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
    local werror=${1:-false}
    if [ ! -f "$build_dir/build.ninja" ]; then
        say "configuring $build_dir"
        meson setup "$build_dir" "$repo" -Dwerror="$werror" >/dev/null
    else
        meson configure "$build_dir" -Dwerror="$werror" >/dev/null
    fi
    say "building"
    # Two cores on the reference machines; more jobs only thrash memory.
    ninja -C "$build_dir" -j "$(nproc)" >/dev/null || ninja -C "$build_dir" -j 1
}

# The same project built with AddressSanitizer + UndefinedBehaviorSanitizer (g++), in a build
# directory of its own; the suite runs there too (scripts/test).
asan_build_dir=${QSHIM_ASAN_BUILD_DIR:-$repo/build-asan}

build_sanitized() {
    if [ ! -f "$asan_build_dir/build.ninja" ]; then
        say "configuring $asan_build_dir (AddressSanitizer + UndefinedBehaviorSanitizer)"
        # -O0 -g1 and libfmt linked, not compiled into every unit: half the compile time of
        # -O1 (Beast's units take 90 s each at -O1 with ASan); the suite mostly waits on QEMU,
        # so slower code costs it little. Line tables are all a report needs. Warnings are the
        # gcc build's job; ASan adds false ones.
        meson setup "$asan_build_dir" "$repo" -Db_sanitize=address,undefined -Db_lundef=false \
            -Doptimization=0 -Dcpp_args=-g1 -Dfmt_header_only=false -Dfuzz=disabled \
            -Dwerror=false >/dev/null
    fi
    say "building with sanitizers"
    ninja -C "$asan_build_dir" -j "$(nproc)" >/dev/null || ninja -C "$asan_build_dir" -j 1
}

build_guest() {
    say "building the test guest in $guest_dir"
    "$repo/tests/guest/build" "$guest_dir"
}

# A Debian 12 cloud image (debootstrap, cloud-init, sshd) for the cloud-image test.
cloud_image_dir=$cache_dir/cloud-image
build_cloud_image() {
    say "building the Debian 12 cloud image in $cloud_image_dir"
    "$repo/tests/cloud-image/build" "$cloud_image_dir"
}

# A build runs in the background beside tests that leave a core idle (they mostly wait on
# their guests), at the lowest priority (nice 19), with its output in a log under .cache/logs/:
#   start_background NAME FUNCTION [ARGS...]   then   wait_background
# wait_background waits and, if the step failed, shows the end of its log and stops. A script
# that stops early (a failed build) leaves nothing running behind it.
background_pid=
background_name=
background_log=
kill_tree() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
    kill "$1" 2>/dev/null || true
}
start_background() {
    background_name=$1
    shift
    background_log=$cache_dir/logs/${background_name// /-}.log
    mkdir -p "$cache_dir/logs"
    say "$background_name, in the background (log: ${background_log#"$repo"/})"
    (
        set -e
        renice -n 19 -p "$BASHPID" >/dev/null 2>&1 || true
        "$@"
    ) >"$background_log" 2>&1 </dev/null &
    background_pid=$!
    trap 'kill_tree "$background_pid"' EXIT
}
wait_background() {
    say "waiting for: $background_name"
    local status=0
    wait "$background_pid" || status=$?
    trap - EXIT
    if [ $status -ne 0 ]; then
        tail -n 40 "$background_log" >&2
        die "$background_name failed (whole log: $background_log)"
    fi
}

# The libFuzzer targets (tests/fuzz/meson.build), built by clang with ASan and UBSan in a build
# directory of their own: scripts/fuzz-smoke (CI) and scripts/fuzz (long runs).
fuzz_build_dir=${QSHIM_FUZZ_BUILD_DIR:-$repo/build-fuzz}
fuzz_targets=(spec-fuzz qmp-fuzz api-fuzz api-route-fuzz plan-fuzz)

# "spec", "spec_fuzz" and "spec-fuzz" all name spec-fuzz.
fuzz_target_name() {
    local t=${1//_/-}
    t=${t%-fuzz}-fuzz
    local known
    for known in "${fuzz_targets[@]}"; do [ "$known" = "$t" ] && { echo "$t"; return; }; done
    die "no fuzz target '$1' (there are: ${fuzz_targets[*]})"
}

build_fuzz() {
    command -v clang++ >/dev/null || die "fuzzing needs clang and its libFuzzer runtime (Debian: apt-get install clang)"
    if [ ! -f "$fuzz_build_dir/build.ninja" ]; then
        say "configuring $fuzz_build_dir (clang, ASan + UBSan, libFuzzer)"
        # -fno-sanitize=function: clang 14 reports a false positive on coroutine resumption.
        # -g1 and libfmt linked: a shorter build; line tables are all a crash report needs.
        # -O0 by default: a third of -O2's compile time (84 s against 24 s for api/session.cpp
        # with ASan and coverage), for about a tenth of the executions; the smoke's worth is the
        # replayed corpus. Long campaigns set QSHIM_FUZZ_OPTIMIZATION=2 in a build dir of their own.
        CXX=clang++ meson setup "$fuzz_build_dir" "$repo" -Dfuzz=enabled -Dfmt_header_only=false \
            -Doptimization="${QSHIM_FUZZ_OPTIMIZATION:-0}" \
            -Db_sanitize=address,undefined -Db_lundef=false \
            -Dcpp_args="-fno-sanitize=function -g1" >/dev/null
    fi
    say "building the fuzz targets"
    local t outputs=()
    for t in "$@"; do outputs+=("tests/fuzz/$t"); done
    ninja -C "$fuzz_build_dir" -j "$(nproc)" "${outputs[@]}" >/dev/null ||
        ninja -C "$fuzz_build_dir" -j 1 "${outputs[@]}"
}

# The value of one of libFuzzer's -print_final_stats lines in a log, or "?".
fuzz_stat() {
    local v
    v=$(sed -n "s/^stat::$1: *//p" "$2" | tail -n 1)
    echo "${v:-?}"
}
