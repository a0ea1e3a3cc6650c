#!/usr/bin/env bash
# Set up the SME2 ExecuTorch profiling learning path on this machine, in one command.
#
# Steps: check Python (3.10+), create a virtual environment, install the pinned packages of
# requirements.txt, build the prebuilt profiling runner, then validate the setup. With
# --with-source it also checks out ExecuTorch at the installed wheel's commit, with the submodules
# the runner build needs, for the SME2 ON/OFF source builds. Safe to rerun: on a ready tree nothing is installed or
# rebuilt and the run takes seconds.
#
# Example:
#   ./scripts/setup_repo.sh
#   PYTHON=python3.12 ./scripts/setup_repo.sh --venv ~/venvs/sme2 --with-source
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV_DIR=$REPO_ROOT/.venv
WITH_SOURCE=0
EXECUTORCH_DIR=$REPO_ROOT/third_party/executorch
EXECUTORCH_URL=https://github.com/pytorch/executorch.git
REQUIREMENTS=$REPO_ROOT/requirements.txt
# The submodules the runner's source build compiles (ExecuTorch lists more: other backends, tests, docs).
# json and gflags are needed though ExecuTorch's docs do not list them.
RUNNER_SUBMODULES=(
  backends/xnnpack/third-party/XNNPACK
  backends/xnnpack/third-party/cpuinfo
  backends/xnnpack/third-party/pthreadpool
  backends/xnnpack/third-party/FXdiv
  backends/xnnpack/third-party/FP16
  kernels/optimized/third-party/eigen
  third-party/flatbuffers
  third-party/flatcc
  third-party/gflags
  third-party/json
  third-party/pocketfft
)
# Written into the venv after a successful install; equal to requirements.txt's hash means nothing to do.
REQUIREMENTS_STAMP_NAME=.requirements.sha256
NETWORK_PROBE_TIMEOUT_S=30

usage() {
  cat <<EOF
Usage: scripts/setup_repo.sh [--venv DIR] [--with-source [--executorch-dir DIR]]

Creates a Python venv, installs the pinned packages (requirements.txt), builds the prebuilt
profiling runner and validates the setup. Rerunning on a ready tree changes nothing.

Options:
  --venv DIR            virtual environment to create or reuse (default: .venv in the repository)
  --with-source         also check out ExecuTorch at the installed wheel's commit, with the submodules
                        the runner build needs, for the SME2 ON/OFF source builds (needs network
                        access to GitHub)
  --executorch-dir DIR  where that checkout goes; the folder must be named executorch
                        (default: third_party/executorch)
  -h, --help            show this help

Environment:
  PYTHON                interpreter that creates the venv (default: python3; needs 3.10 or newer)

Example:
  ./scripts/setup_repo.sh && .venv/bin/python -m pytest test-cases
EOF
}

# One line naming the problem and its fix, then a non-zero exit.
die() {
  echo "setup_repo.sh: error: $*" >&2
  exit 1
}

step() {
  echo "==> $*"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      --venv)
        [[ $# -ge 2 ]] || die "--venv needs a directory; fix: --venv DIR"
        VENV_DIR=$2
        shift 2
        ;;
      --with-source)
        WITH_SOURCE=1
        shift
        ;;
      --executorch-dir)
        [[ $# -ge 2 ]] || die "--executorch-dir needs a directory; fix: --executorch-dir DIR"
        EXECUTORCH_DIR=$2
        shift 2
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        die "unknown option '$1'; fix: see scripts/setup_repo.sh --help"
        ;;
    esac
  done
  # Absolute paths, so later steps may change directory freely.
  VENV_DIR=$(absolute_path "$VENV_DIR")
  EXECUTORCH_DIR=$(absolute_path "$EXECUTORCH_DIR")
  # ExecuTorch's CMake files include paths through a folder named executorch.
  [[ $(basename "$EXECUTORCH_DIR") == executorch ]] ||
    die "--executorch-dir must end in a folder named executorch (ExecuTorch's build expects it), not $(basename "$EXECUTORCH_DIR"); fix: --executorch-dir $(dirname "$EXECUTORCH_DIR")/executorch"
}

absolute_path() {
  case $1 in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
  esac
}

check_python() {
  local version
  version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) ||
    die "cannot run the Python interpreter '$PYTHON'; fix: install Python 3.10 or newer and rerun with PYTHON=/path/to/python3"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "Python $version ('$PYTHON') is too old, this kit needs Python 3.10 or newer; fix: rerun with PYTHON=python3.11 (or another 3.10+ interpreter)"
  step "Python $version ($PYTHON)"
}

# Git and a C/C++ compiler, checked before minutes of installing; validate_setup.py owns the rules.
check_prerequisites() {
  local failures
  failures=$("$PYTHON" "$REPO_ROOT/scripts/validate_setup.py" --prerequisites --json |
    "$PYTHON" -c 'import json, sys
fails = [c for c in json.load(sys.stdin)["checks"] if c["status"] == "FAIL"]
print(" | ".join("%s: %s; fix: %s" % (c["name"], c["detail"], c["fix"]) for c in fails))') || true
  [[ -z $failures ]] || die "$failures"
  step "prerequisites: git and a C/C++ compiler found"
}

ensure_venv() {
  if [[ -x $VENV_DIR/bin/python ]]; then
    "$VENV_DIR/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
      die "the venv $VENV_DIR has no working Python 3.10+; fix: move it aside (mv $VENV_DIR $VENV_DIR.old) and rerun"
    step "venv ready: $VENV_DIR"
    return
  fi
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "'$PYTHON' cannot create virtual environments (no venv/ensurepip module); fix: install it (Debian/Ubuntu: sudo apt-get install python3-venv)"
  step "creating venv: $VENV_DIR"
  "$PYTHON" -m venv "$VENV_DIR"
}

requirements_hash() {
  "$VENV_DIR/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "$REQUIREMENTS"
}

install_requirements() {
  local stamp=$VENV_DIR/$REQUIREMENTS_STAMP_NAME wanted
  [[ -f $REQUIREMENTS ]] || die "$REQUIREMENTS is missing; fix: run this script from a complete checkout of the repository"
  wanted=$(requirements_hash)
  if [[ -f $stamp && $(<"$stamp") == "$wanted" ]]; then
    step "pinned packages: nothing to install (requirements.txt unchanged since the last install)"
    return
  fi
  step "installing the pinned packages from requirements.txt (a few minutes on a fresh venv)"
  "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check -r "$REQUIREMENTS" ||
    die "pip could not install requirements.txt (see pip's messages above); fix: check the network access to PyPI and rerun"
  echo "$wanted" >"$stamp"
}

# The commit the installed executorch wheel was built from, so source and wheel agree.
wheel_commit() {
  "$VENV_DIR/bin/python" -c 'from executorch.version import git_version; print(git_version)' 2>/dev/null ||
    die "cannot read executorch.version.git_version from the venv; fix: rerun scripts/setup_repo.sh without --with-source first"
}

# Runs git with no prompts; on failure prints one line with git's last message and exits.
git_or_die() {
  local what=$1 log
  shift
  log=$(mktemp)
  if ! GIT_TERMINAL_PROMPT=0 git "$@" 2>"$log"; then
    local reason
    reason=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
    rm -f "$log"
    die "$what failed: ${reason:-git exited non-zero}; fix: check the network access to github.com and rerun (an interrupted checkout resumes)"
  fi
  rm -f "$log"
}

# Fails fast with one line when GitHub is unreachable, instead of a long git error mid-clone.
check_github_reachable() {
  local limit=() reason
  if command -v timeout >/dev/null; then
    limit=(timeout "$NETWORK_PROBE_TIMEOUT_S")
  fi
  if ! reason=$(GIT_TERMINAL_PROMPT=0 ${limit[@]+"${limit[@]}"} git ls-remote --exit-code "$EXECUTORCH_URL" HEAD 2>&1 >/dev/null); then
    reason=$(echo "$reason" | grep -v '^[[:space:]]*$' | tail -n 1)
    die "cannot reach $EXECUTORCH_URL (${reason:-no answer within ${NETWORK_PROBE_TIMEOUT_S} s}); fix: connect to the internet and rerun with --with-source, or skip --with-source (the prebuilt runner needs no checkout)"
  fi
}

submodules_ready() {
  local status
  status=$(git -C "$EXECUTORCH_DIR" submodule status -- "${RUNNER_SUBMODULES[@]}" 2>/dev/null) || return 1
  # '-' marks a submodule never checked out, '+' one at the wrong commit, 'U' a conflict.
  ! grep -q '^[-+U]' <<<"$status"
}

checkout_executorch_source() {
  local commit head
  command -v git >/dev/null || die "git is not installed; fix: install git (macOS: xcode-select --install; Debian/Ubuntu: sudo apt-get install git)"
  commit=$(wheel_commit)
  if [[ -e $EXECUTORCH_DIR/.git ]]; then
    head=$(git -C "$EXECUTORCH_DIR" rev-parse --verify --quiet HEAD || true)
    if [[ -n $head && $head != "$commit" ]]; then
      die "$EXECUTORCH_DIR is at commit $head but the installed wheel was built from $commit; fix: pass --executorch-dir with a new directory, or check out $commit there yourself"
    fi
    if [[ -n $head ]] && submodules_ready; then
      step "ExecuTorch source: reusing $EXECUTORCH_DIR at $commit"
      return
    fi
  elif [[ -d $EXECUTORCH_DIR && -n $(ls -A "$EXECUTORCH_DIR") ]]; then
    die "$EXECUTORCH_DIR exists and is not a git checkout; fix: pass --executorch-dir with a new or empty directory"
  fi
  check_github_reachable
  step "ExecuTorch source: checking out $commit with submodules into $EXECUTORCH_DIR (several minutes)"
  mkdir -p "$EXECUTORCH_DIR"
  if [[ ! -e $EXECUTORCH_DIR/.git ]]; then
    git_or_die "git init" init --quiet "$EXECUTORCH_DIR"
    git_or_die "git remote add" -C "$EXECUTORCH_DIR" remote add origin "$EXECUTORCH_URL"
  fi
  if [[ -z ${head:-} ]]; then
    # One commit of history is enough to build; GitHub serves any commit by its hash.
    git_or_die "fetching ExecuTorch $commit" -C "$EXECUTORCH_DIR" fetch --depth 1 origin "$commit"
    git_or_die "checking out $commit" -C "$EXECUTORCH_DIR" -c advice.detachedHead=false checkout --quiet FETCH_HEAD
  fi
  git_or_die "syncing submodule URLs" -C "$EXECUTORCH_DIR" submodule sync --quiet -- "${RUNNER_SUBMODULES[@]}"
  # Only what the runner build needs, shallow first (much smaller); a server that refuses a shallow
  # fetch of a pinned commit gets a full one.
  if ! GIT_TERMINAL_PROMPT=0 git -C "$EXECUTORCH_DIR" submodule update --init --depth 1 --jobs 4 -- "${RUNNER_SUBMODULES[@]}"; then
    git_or_die "fetching ExecuTorch submodules" -C "$EXECUTORCH_DIR" submodule update --init --jobs 4 -- "${RUNNER_SUBMODULES[@]}"
  fi
  step "ExecuTorch source ready: $EXECUTORCH_DIR"
}

build_prebuilt_runner() {
  local builder=$REPO_ROOT/scripts/build_runners.py
  if [[ ! -f $builder ]]; then
    step "prebuilt runner: skipped (scripts/build_runners.py is not in this checkout yet)"
    return
  fi
  step "prebuilt runner (rebuilt only when runner/ or the wheel changed)"
  "$VENV_DIR/bin/python" "$builder" --flavor prebuilt ||
    die "building the prebuilt runner failed (see above); fix: read the build log it names, then rerun"
}

validate() {
  step "validating the setup"
  "$VENV_DIR/bin/python" "$REPO_ROOT/scripts/validate_setup.py" --venv "$VENV_DIR" ||
    die "the setup has FAIL checks (table above); fix: apply the fix shown for each FAIL row and rerun"
}

main() {
  parse_args "$@"
  check_python
  check_prerequisites
  ensure_venv
  install_requirements
  if [[ $WITH_SOURCE == 1 ]]; then
    checkout_executorch_source
  fi
  build_prebuilt_runner
  validate
  step "setup complete"
}

main "$@"
