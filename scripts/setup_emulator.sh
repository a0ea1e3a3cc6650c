#!/usr/bin/env bash
# Set up the emulated SME2 platform on a Linux x86_64 (Debian/Ubuntu) host, all under build/emulator/:
#   * qemu-aarch64 >= 11 (it emulates SME2 under -cpu max), taken from Debian's qemu-user package of
#     trixie-backports (or sid) with `apt-get download` + `dpkg-deb`: a private apt sources list, list
#     and cache folder under build/emulator/apt, so the system's apt sources and installed packages stay
#     as they are. Debian's qemu-aarch64 is a static binary: it runs from any folder.
#   * the arm64 executorch wheel matching the venv's executorch, unpacked (never installed).
# From the cross toolchain it keeps the system's g++-aarch64-linux-gnu: the compiler cross-builds the
# runner and its /usr/aarch64-linux-gnu is the sysroot qemu-aarch64 -L loads the runner's libc from.
# That package comes from the host's own Debian release (no extra apt source); it is installed (root)
# only when missing, because a relocated private copy of a cross gcc would need its configured paths
# rewritten.
# Idempotent: a second run only checks and exits. Other hosts get a skip line and exit 0. Where a tool
# cannot be had it says why and exits 0 (the emulated tests then skip with that reason); with CI set in
# the environment it exits 1 instead, because CI must run those tests.
#
# Example:
#   ./scripts/setup_repo.sh && ./scripts/setup_emulator.sh && build/emulator/bin/qemu-aarch64 --version
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PYTHON="${VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
EMULATOR_DIR="${EMULATOR_DIR:-$REPO_ROOT/build/emulator}"
QEMU="$EMULATOR_DIR/bin/qemu-aarch64"
MIN_QEMU_MAJOR=11  # QEMU 11 is the first whose -cpu max has SME2 (QEMU 10 has SME only)
QEMU_SUITES="trixie-backports sid"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
CROSS_TRIPLE=aarch64-linux-gnu
SYSROOT=/usr/$CROSS_TRIPLE

say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }
# A tool cannot be had here: fatal in CI, a skip notice elsewhere.
unavailable() {
  [ -z "${CI:-}" ] || fail "$*"
  say "skip: $* (the emulated SME2 platform and its tests are unavailable)"
  exit 0
}

qemu_major() {
  [ -x "$QEMU" ] || { echo 0; return; }
  "$QEMU" --version | sed -n 's/^qemu-aarch64 version \([0-9]*\).*/\1/p'
}

# apt-get and apt-cache on a private state: only the named suite, nothing system wide.
private_apt() {
  local tool="$1"; shift
  local apt="$EMULATOR_DIR/apt"
  "$tool" -q -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State::Lists="$apt/lists" -o Dir::State::Status="$apt/status" -o Dir::Cache="$apt/cache" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" "$@"
}

# qemu-user >= 11 from the first suite that has it, unpacked to build/emulator/bin/qemu-aarch64.
fetch_qemu() {
  if [ "$(qemu_major)" -ge "$MIN_QEMU_MAJOR" ]; then
    say "qemu: $("$QEMU" --version | head -n 1)"
    return
  fi
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || unavailable "no apt-get/dpkg-deb to fetch Debian's qemu-user >= $MIN_QEMU_MAJOR; put a qemu-aarch64 >= $MIN_QEMU_MAJOR at $QEMU"
  [ -f "$DEBIAN_KEYRING" ] || unavailable "no $DEBIAN_KEYRING to verify Debian's archive; install debian-archive-keyring"
  local apt="$EMULATOR_DIR/apt" suite version deb
  for suite in $QEMU_SUITES; do
    rm -rf "$apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
    : > "$apt/status"
    echo "deb [signed-by=$DEBIAN_KEYRING] $DEBIAN_MIRROR $suite main" > "$apt/sources.list"
    say "looking for qemu-user in Debian $suite"
    private_apt apt-get update --error-on=any >/dev/null 2>&1 || { say "  cannot read Debian $suite from $DEBIAN_MIRROR"; continue; }
    version="$(private_apt apt-cache show qemu-user 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)" || version=""
    [ -n "$version" ] || { say "  $suite has no qemu-user"; continue; }
    [ "$(printf '%s' "$version" | sed 's/^[0-9]*://' | cut -d. -f1)" -ge "$MIN_QEMU_MAJOR" ] \
      || { say "  $suite has qemu-user $version, older than $MIN_QEMU_MAJOR"; continue; }
    say "downloading qemu-user $version ($suite, about 70 MB)"
    (cd "$apt/download" && private_apt apt-get download "qemu-user=$version" >/dev/null 2>&1) \
      || { say "  download of qemu-user $version failed"; continue; }
    deb="$(ls "$apt"/download/qemu-user_*.deb | head -n 1)"
    rm -rf "$EMULATOR_DIR/qemu.partial"
    mkdir -p "$EMULATOR_DIR/qemu.partial" "$EMULATOR_DIR/bin"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$EMULATOR_DIR/qemu.partial" ./usr/bin/qemu-aarch64
    mv "$EMULATOR_DIR/qemu.partial/usr/bin/qemu-aarch64" "$QEMU.partial"
    mv "$QEMU.partial" "$QEMU"  # atomic: a half-written binary never sits at $QEMU
    rm -rf "$EMULATOR_DIR/qemu.partial" "$apt"
    [ "$(qemu_major)" -ge "$MIN_QEMU_MAJOR" ] || fail "$QEMU does not run or is older than $MIN_QEMU_MAJOR"
    say "qemu: $("$QEMU" --version | head -n 1)"
    return
  done
  unavailable "no Debian suite of $QEMU_SUITES offered qemu-user >= $MIN_QEMU_MAJOR from $DEBIAN_MIRROR; check the network or set DEBIAN_MIRROR"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else unavailable "installing g++-$CROSS_TRIPLE needs root; rerun as root or install it yourself"
  fi
}

# The cross compiler and its sysroot, from the host's own release when missing.
ensure_cross_toolchain() {
  if ! command -v "$CROSS_TRIPLE-g++" >/dev/null; then
    command -v apt-get >/dev/null || unavailable "no $CROSS_TRIPLE-g++; install the GNU aarch64 cross compiler with your package manager"
    say "installing g++-$CROSS_TRIPLE (from this system's own Debian/Ubuntu release)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "g++-$CROSS_TRIPLE" >/dev/null \
      || unavailable "g++-$CROSS_TRIPLE did not install (try: sudo apt-get update first)"
  fi
  [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || fail "no aarch64 loader in $SYSROOT; reinstall g++-$CROSS_TRIPLE"
  say "cross toolchain: $("$CROSS_TRIPLE-g++" --version | head -n 1), sysroot $SYSROOT"
}

# The arm64 build of the very executorch version the venv has, unpacked beside the x86 one.
fetch_arm64_wheel() {
  [ -x "$VENV_PYTHON" ] || fail "no venv at $VENV_PYTHON; run ./scripts/setup_repo.sh first"
  local version pyver unpacked wheel
  version="$("$VENV_PYTHON" -c 'import executorch.version as v; print(v.__version__.split("+")[0])')" \
    || fail "executorch is not installed in $VENV_PYTHON; run ./scripts/setup_repo.sh first"
  pyver="$("$VENV_PYTHON" -c 'import sys; print(f"{sys.version_info.major}{sys.version_info.minor}")')"
  unpacked="$EMULATOR_DIR/executorch-$version-cp$pyver-aarch64"
  if [ -f "$unpacked/executorch/share/cmake/executorch-config.cmake" ]; then
    say "arm64 executorch $version: $unpacked"
    return
  fi
  mkdir -p "$EMULATOR_DIR/wheels"
  say "downloading the arm64 executorch $version wheel"
  "$VENV_PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
    --python-version "$pyver" --dest "$EMULATOR_DIR/wheels" "executorch==$version" \
    || unavailable "pip could not download the arm64 executorch==$version wheel for Python $pyver"
  wheel="$(ls "$EMULATOR_DIR"/wheels/executorch-"$version"-*aarch64*.whl | head -n 1)"
  rm -rf "$unpacked.partial"
  "$VENV_PYTHON" -m zipfile -e "$wheel" "$unpacked.partial"
  mv "$unpacked.partial" "$unpacked"
  say "arm64 executorch $version: $unpacked"
}

main() {
  if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
    say "skip: the emulated SME2 platform is set up on Linux x86_64 hosts only (this is $(uname -s) $(uname -m))"
    exit 0
  fi
  fetch_qemu
  ensure_cross_toolchain
  fetch_arm64_wheel
  say "ready: $QEMU -cpu max emulates SME2; python scripts/generate_config.py --platform emulated --compare isa --out emulated.json"
}

main "$@"
