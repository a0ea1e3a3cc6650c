#!/usr/bin/env bash
# Install what the emulated Armv9 device tests need, on a Linux x86_64 (Debian) host:
#   * qemu-user 10.x from <codename>-backports (bookworm's own is 7.2; the tests were verified on 10.0),
#   * g++-aarch64-linux-gnu (cross compiler, and the aarch64 libc/libstdc++ that qemu -L uses),
#   * the arm64 executorch wheel matching the venv's executorch, downloaded and unpacked
#     under build/emulator/ (never installed into the venv).
# Idempotent: a second run only checks and exits. On other hosts it prints a skip line, exits 0.
# Where the tools cannot be installed (no apt-get, no backports) it says why and exits 0, so the
# emulated tests skip with that reason; with CI set in the environment it exits 1 instead, because
# CI must run those tests.
#
# Example:
#   ./scripts/setup_repo.sh && ./test-cases/emulator/setup_emulator.sh && .venv/bin/python -m pytest test-cases
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV_PYTHON="${VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
EMULATOR_DIR="${EMULATOR_DIR:-$REPO_ROOT/build/emulator}"
MIN_QEMU_MAJOR=10  # verified: QEMU 10.0's -cpu max has SME (not SME2) and XNNPACK picks its KleidiAI kernels
SYSROOT=/usr/aarch64-linux-gnu

say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }
# The tools cannot be had here: fatal in CI, a skip notice elsewhere.
unavailable() {
  [ -z "${CI:-}" ] || fail "$*"
  say "skip: $* (the emulated device tests will be skipped)"
  exit 0
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else unavailable "installing packages needs root; rerun as root or install sudo"
  fi
}

qemu_major() {
  command -v qemu-aarch64 >/dev/null || { echo 0; return; }
  qemu-aarch64 --version | sed -n 's/^qemu-aarch64 version \([0-9]*\).*/\1/p'
}

# The Debian mirror this machine already uses (deb822 .sources or one-line .list).
debian_mirror() {
  local codename="$1" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v suite="$codename" '
      /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (uri != "" && hit) print uri }' "$file" | head -n 1
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v suite="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) print $i; break } }' "$file"
  done
}

backports_listed() {
  grep -rqsE "(^|[[:space:]])$1-backports([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/
}

add_backports() {
  local codename="$1" mirror
  backports_listed "$codename" && return
  mirror="$(debian_mirror "$codename" | head -n 1)"
  [ -n "$mirror" ] || unavailable "no Debian '$codename' source found in /etc/apt; add one, then rerun"
  say "adding $codename-backports from $mirror"
  as_root tee "/etc/apt/sources.list.d/$codename-backports.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: $codename-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

install_packages() {
  command -v apt-get >/dev/null || unavailable "no apt-get; install qemu-user >= $MIN_QEMU_MAJOR and g++-aarch64-linux-gnu with your package manager"
  . /etc/os-release
  local codename="${VERSION_CODENAME:-}"
  [ -n "$codename" ] || unavailable "cannot tell the Debian release from /etc/os-release; install qemu-user >= $MIN_QEMU_MAJOR and g++-aarch64-linux-gnu by hand"
  if [ "$(qemu_major)" -lt "$MIN_QEMU_MAJOR" ] || ! command -v aarch64-linux-gnu-g++ >/dev/null; then
    add_backports "$codename"
    as_root apt-get update -qq || unavailable "apt-get update failed; check the network and /etc/apt sources"
  fi
  if [ "$(qemu_major)" -lt "$MIN_QEMU_MAJOR" ]; then
    say "installing qemu-user from $codename-backports"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "$codename-backports" qemu-user >/dev/null \
      || unavailable "qemu-user from $codename-backports did not install"
  fi
  if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
    say "installing g++-aarch64-linux-gnu"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu >/dev/null \
      || unavailable "g++-aarch64-linux-gnu did not install"
  fi
  [ "$(qemu_major)" -ge "$MIN_QEMU_MAJOR" ] || unavailable "qemu-aarch64 $(qemu_major) is older than $MIN_QEMU_MAJOR; install qemu-user from $codename-backports"
  [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || fail "no aarch64 loader in $SYSROOT; reinstall g++-aarch64-linux-gnu"
}

# The arm64 build of the very executorch version the venv has, unpacked beside the x86 one.
fetch_arm64_wheel() {
  [ -x "$VENV_PYTHON" ] || fail "no venv at $VENV_PYTHON; run ./scripts/setup_repo.sh first"
  local version pyver unpacked
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
  local wheel
  wheel="$(ls "$EMULATOR_DIR"/wheels/executorch-"$version"-*aarch64*.whl | head -n 1)"
  rm -rf "$unpacked.partial"
  "$VENV_PYTHON" -m zipfile -e "$wheel" "$unpacked.partial"
  mv "$unpacked.partial" "$unpacked"
  say "arm64 executorch $version: $unpacked"
}

main() {
  if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
    say "skip: the emulated Armv9 device is set up on Linux x86_64 hosts only (this is $(uname -s) $(uname -m))"
    exit 0
  fi
  install_packages
  fetch_arm64_wheel
  say "ready: $(qemu-aarch64 --version | head -n 1), $(aarch64-linux-gnu-g++ --version | head -n 1)"
}

main "$@"
