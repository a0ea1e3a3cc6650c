"""The commands of the first page that get the kit: sparse checkout, archive, single script.

They run as printed, against a stand-in of the site repository laid out like the real one
(the kit at content/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling, next
to other content), with no network: git clones a local bare repository through file://, and
wget fetches the archive and the raw file from a local HTTP server. Only the address variables
change; the page must still set them to the published addresses.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from doc_checks import fenced_blocks

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRST_PAGE = REPO_ROOT / "01-overview.md"
PUBLISHED = {
    "REPO": "https://github.com/ArmDeveloperEcosystem/arm-learning-paths",
    "LP": "content/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling",
    "RAW": "https://raw.githubusercontent.com/ArmDeveloperEcosystem/arm-learning-paths/main",
}
KIT_FOLDER = "sme-executorch-profiling"
GIT = ["git", "-c", "user.name=Stand-in", "-c", "user.email=stand-in@localhost", "-c", "init.defaultBranch=main",
       "-c", "protocol.file.allow=always"]


def get_the_kit_blocks() -> list[str]:
    """The ```bash blocks of the 'Get the kit' section, in order."""
    text = FIRST_PAGE.read_text()
    match = re.search(r"^## Get the kit\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "01-overview.md has no '## Get the kit' section"
    return fenced_blocks(match.group(1), "bash")


def assignments(block: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z]+)=(\S+)$", block, re.MULTILINE))


def kit_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    return sorted(name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file())


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A bare repository laid out like the site's, its main-branch archive and raw files behind
    a local HTTP server."""
    if not shutil.which("wget"):
        message = "wget is missing: run ./test-cases/site/setup_site_tools.sh"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    root = tmp_path_factory.mktemp("site")
    work = root / "work"
    kit_dir = work / PUBLISHED["LP"]
    for name in kit_files():
        target = kit_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    (work / "content/learning-paths/cross-platform/another-path").mkdir(parents=True)
    (work / "content/learning-paths/cross-platform/another-path/_index.md").write_text("---\ntitle: other\n---\n")
    (work / "README.md").write_text("stand-in of the site repository\n")
    subprocess.run(GIT + ["init", "-q", str(work)], check=True)
    subprocess.run(GIT + ["-C", str(work), "add", "-A"], check=True)
    subprocess.run(GIT + ["-C", str(work), "commit", "-q", "-m", "stand-in"], check=True)
    served = root / "served"
    bare = served / "ArmDeveloperEcosystem/arm-learning-paths.git"
    subprocess.run(GIT + ["clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "config", "uploadpack.allowFilter", "true"], check=True)
    archive = served / "ArmDeveloperEcosystem/arm-learning-paths/archive/refs/heads/main.tar.gz"
    archive.parent.mkdir(parents=True)
    subprocess.run(["git", "-C", str(work), "archive", "--format=tar.gz", "--prefix=arm-learning-paths-main/",
                    "-o", str(archive), "main"], check=True)
    raw = served / "raw/ArmDeveloperEcosystem/arm-learning-paths/main"
    shutil.copytree(work, raw, ignore=shutil.ignore_patterns(".git"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"root": root, "file_repo": f"file://{served}/ArmDeveloperEcosystem/arm-learning-paths",
           "http_repo": f"{base}/ArmDeveloperEcosystem/arm-learning-paths",
           "http_raw": f"{base}/raw/ArmDeveloperEcosystem/arm-learning-paths/main"}
    server.shutdown()


def run_block(block: str, cwd: Path, **values: str) -> subprocess.CompletedProcess:
    """Run a page block after setting the address variables, then print where it ended up."""
    preamble = "".join(f"{name}={value}\n" for name, value in values.items())
    script = preamble + block + "\npwd\n"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def assert_is_the_kit(folder: Path) -> None:
    assert folder.name == KIT_FOLDER, f"the commands end in {folder}, not in a folder named {KIT_FOLDER}"
    missing = [name for name in kit_files() if not (folder / name).is_file()]
    assert not missing, f"{folder} lacks {missing[:5]}"
    assert (folder / "scripts/analyze_results.py").read_bytes() == (REPO_ROOT / "scripts/analyze_results.py").read_bytes()


def test_the_page_sets_the_published_addresses():
    blocks = get_the_kit_blocks()
    assert len(blocks) == 4, "Get the kit: the variables, then sparse checkout, archive and single script"
    assert assignments(blocks[0]) == {"REPO": PUBLISHED["REPO"], "LP": PUBLISHED["LP"]}
    assert assignments(blocks[3]).get("RAW") == PUBLISHED["RAW"]


def test_sparse_checkout_gets_only_the_kit(site, tmp_path):
    block = get_the_kit_blocks()[1]
    result = run_block(block, tmp_path, REPO=site["file_repo"], LP=PUBLISHED["LP"])
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.split()[-1])
    assert_is_the_kit(folder)
    checkout = tmp_path / "arm-learning-paths"
    assert not (checkout / "content/learning-paths/cross-platform").exists(), "the sparse checkout took other paths"
    status = subprocess.run(["git", "-C", str(folder), "status", "--short"], capture_output=True, text=True)
    assert status.returncode == 0 and not status.stdout.strip(), "the checkout is not a clean git working tree"


def test_archive_one_liner_strips_to_the_kit_folder(site, tmp_path):
    block = get_the_kit_blocks()[2]
    assert "--strip-components=4" in block
    result = run_block(block, tmp_path, REPO=site["http_repo"], LP=PUBLISHED["LP"])
    assert result.returncode == 0, result.stderr
    assert_is_the_kit(Path(result.stdout.split()[-1]))
    assert sorted(path.name for path in tmp_path.iterdir()) == [KIT_FOLDER], "the archive left other folders"


def test_a_wrong_strip_depth_is_caught(site, tmp_path):
    """Test the test: one component fewer leaves the kit one folder deeper, and the check fails."""
    block = get_the_kit_blocks()[2].replace("--strip-components=4", "--strip-components=3")
    result = run_block(block, tmp_path, REPO=site["http_repo"], LP=PUBLISHED["LP"])
    with pytest.raises(AssertionError):
        assert result.returncode == 0, result.stderr
        assert_is_the_kit(Path(result.stdout.split()[-1]))


def test_single_script_download(site, tmp_path):
    block = get_the_kit_blocks()[3]
    result = run_block(block.replace(f"RAW={PUBLISHED['RAW']}", f"RAW={site['http_raw']}"), tmp_path,
                       LP=PUBLISHED["LP"])
    assert result.returncode == 0, result.stderr
    fetched = tmp_path / "scripts/export_model.py"
    assert fetched.read_bytes() == (REPO_ROOT / "scripts/export_model.py").read_bytes()
