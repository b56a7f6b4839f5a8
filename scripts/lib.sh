# Shared by scripts/demo and scripts/test: install what is missing, build, build the test guest.
# Sourced, not run. Every step is idempotent: a second run only does what changed.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${QSHIM_BUILD_DIR:-$repo/build}
cache_dir=${QSHIM_CACHE_DIR:-$repo/.cache}
guest_dir=$cache_dir/guest

# Debian 12 packages: build tools and libraries, QEMU, and what the test guest is made from.
packages=(meson ninja-build g++ pkg-config python3
    libboost1.81-dev nlohmann-json3-dev libyaml-cpp-dev libseccomp-dev libcap-ng-dev libfmt-dev catch2
    qemu-system-x86 qemu-utils busybox-static cpio clang-format)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
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

build_guest() {
    say "building the test guest in $guest_dir"
    "$repo/tests/guest/build" "$guest_dir"
}
