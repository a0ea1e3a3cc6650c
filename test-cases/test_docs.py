"""Doc tests for the learning-path pages: front matter, links, commands, configs, and the
Quick start of pages 02-06 (plus Path 2 of _index.md) run end to end in a temporary copy.

A page fails here when it names a script, flag, file, CSV column or manifest field that does
not exist, when a config it shows is invalid, or when its Quick start stops working.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from doc_checks import command_problems, fenced_blocks

REPO_ROOT = Path(__file__).resolve().parent.parent
# Page file -> Hugo weight: _index first, the numbered pages in order, next steps last.
PAGE_WEIGHTS = {
    "_index.md": 1,
    "01-prerequisites.md": 2,
    "02-setup-environment.md": 3,
    "03-build-runners.md": 4,
    "04-export-model.md": 5,
    "05-run-mac-pipeline.md": 6,
    "06-analyze-results.md": 7,
    "07-android-pipeline.md": 8,
    "08-onboard-model.md": 9,
    "_next-steps.md": 21,
}
STEP_PAGES = [name for name in PAGE_WEIGHTS if name[0].isdigit()]
# Pages whose Quick start CI runs, in page order, in one temporary copy of the repository.
QUICK_START_PAGES = ["02-setup-environment.md", "03-build-runners.md", "04-export-model.md",
                     "05-run-mac-pipeline.md", "06-analyze-results.md"]
INDEX_KEYS = ["title", "minutes_to_complete", "who_is_this_for", "learning_objectives", "prerequisites", "author",
              "skilllevels", "subjects", "armips", "tools_software_languages", "operatingsystems",
              "further_reading", "weight", "layout", "learning_path_main_page"]
NEXT_STEPS_KEYS = ["next_step_guidance", "recommended_path", "further_reading", "weight", "title", "layout"]
CODE_LANGUAGES = {"bash", "python", "json", "output"}
BANNED_WORDS = re.compile(r"\b(simply|just)\b", re.IGNORECASE)
LAST_HEADING = "## What you've accomplished and what's next"
# Backticked paths that the Quick starts of pages 02-06 produce; pages may only name ones that exist.
PRODUCED_PREFIXES = ("out/first_run", "models/toy_cnn", "runners/prebuilt/")
# Backticked paths into the kit itself: they must exist in the repository.
KIT_DIRS = ("scripts/", "configs/", "agentic-kits/", "runner/", "test-cases/", "benchmarks/", "images/")
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.")
# Kit paths a page may name although a fresh checkout lacks them: the script that writes each.
WRITTEN_BY_SCRIPTS = {"runner/CMakeUserPresets.json": "scripts/build_runners.py"}
FENCE_LINE = re.compile(r"^```")


# --- reading pages -----------------------------------------------------------------------


def page_text(name: str) -> str:
    path = REPO_ROOT / name
    assert path.is_file(), f"{name} is missing"
    return path.read_text()


def split_front_matter(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "no front matter (--- ... ---) at the top"
    front = yaml.safe_load(match.group(1))
    assert isinstance(front, dict), "front matter is not a mapping"
    return front, text[match.end():]


def prose(text: str) -> str:
    """The page without fenced blocks and inline code: what the reader reads as sentences."""
    without_blocks = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", without_blocks)


def quick_start_section(name: str) -> str:
    """The Quick start section of a page (the Path 2 section on _index.md)."""
    _, body = split_front_matter(page_text(name))
    heading = "Path 2" if name == "_index.md" else "Quick start"
    match = re.search(rf"^##+ {heading}[^\n]*\n(.*?)(?=^##? |^### |\Z)", body, re.MULTILINE | re.DOTALL)
    assert match, f"{name}: no '{heading}' heading"
    return match.group(1)


def quick_start_commands(name: str) -> str:
    """Every ```bash block of the Quick start, in order, except getting the files: the temporary
    copy of the repository the test runs in stands in for the clone or download."""
    blocks = [block for block in fenced_blocks(quick_start_section(name), "bash")
              if not re.search(r"\bgit clone\b|\bcurl\b", block)]
    assert blocks, f"{name}: no ```bash block to run in its Quick start"
    return "\n".join(blocks)


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)))


def markdown_targets(text: str) -> list[tuple[bool, str]]:
    """(is_image, target) of every markdown link and image outside code blocks."""
    body = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    body = re.sub(r"`[^`\n]*`", "", body)
    return [(bang == "!", target) for bang, target in re.findall(r"(!?)\[[^\]]*\]\(\s*([^)\s]+)[^)]*\)", body)]


# --- static checks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_front_matter(name):
    front, _ = split_front_matter(page_text(name))
    assert front.get("weight") == PAGE_WEIGHTS[name], f"{name}: weight {front.get('weight')}"
    assert front.get("layout") == "learningpathall"
    assert isinstance(front.get("title"), str) and front["title"].strip()
    if name == "_index.md":
        missing = [key for key in INDEX_KEYS if key not in front]
        assert not missing, f"_index.md lacks {missing}"
        assert front["learning_path_main_page"] == "yes"
        assert isinstance(front["minutes_to_complete"], int) and front["minutes_to_complete"] > 0
        assert 5 <= len(front["learning_objectives"]) <= 6
        assert front["skilllevels"] == "Advanced" and front["subjects"] == "ML"
        for key in ("prerequisites", "armips", "tools_software_languages", "operatingsystems"):
            assert isinstance(front[key], list) and front[key], f"{key} must be a non-empty list"
    elif name == "_next-steps.md":
        missing = [key for key in NEXT_STEPS_KEYS if key not in front]
        assert not missing, f"_next-steps.md lacks {missing}"
        assert front["title"] == "Next Steps"
    if "further_reading" in front:
        for item in front["further_reading"]:
            resource = item["resource"]
            assert resource["title"] and resource["link"].startswith(("https://", "/"))
            assert resource["type"] in ("documentation", "blog", "website")


def test_weights_follow_file_order():
    weights = [split_front_matter(page_text(name))[0]["weight"] for name in PAGE_WEIGHTS]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)


@pytest.mark.parametrize("name", STEP_PAGES)
def test_page_shape(name):
    """Quick start first, tagged code blocks, notices closed, ends with what you have and what is next."""
    _, body = split_front_matter(page_text(name))
    headings = re.findall(r"^## .*$", body, re.MULTILINE)
    assert headings and headings[0].startswith("## Quick start"), f"{name}: first section is {headings[:1]}"
    assert headings[-1] == LAST_HEADING, f"{name}: last section is {headings[-1]!r}"
    quick = quick_start_section(name)
    assert re.search(r"\b\d+ (minutes?|seconds)\b", prose(quick)), f"{name}: the Quick start gives no time"
    blocks = fenced_blocks(quick, "bash")
    assert len(blocks) >= 2, f"{name}: the Quick start needs its commands and then one verification command"
    last_block_at = quick.rindex("```bash")
    assert re.search(r"^Verify", quick[:last_block_at].rstrip().rsplit("\n\n", 1)[-1], re.MULTILINE), \
        f"{name}: the last Quick start block must follow a 'Verify ...' sentence"
    assert body.count("{{% notice") == body.count("{{% /notice %}}")


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_code_blocks_are_tagged(name):
    text = page_text(name)
    fences = [line for line in text.splitlines() if FENCE_LINE.match(line)]
    assert len(fences) % 2 == 0, f"{name}: unbalanced ``` fences"
    openings = fences[::2]
    untagged = [line for line in openings if line.strip("`").strip() not in CODE_LANGUAGES]
    assert not untagged, f"{name}: code blocks must be tagged {sorted(CODE_LANGUAGES)}: {untagged}"


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_style_words(name):
    found = BANNED_WORDS.findall(prose(page_text(name)))
    assert not found, f"{name}: avoid {sorted(set(found))}"


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_output_blocks_say_where_they_were_captured(name):
    """Every sample output is labelled with the machine it came from (numbers never lie)."""
    lines = page_text(name).splitlines()
    inside = False
    for index, line in enumerate(lines):
        if not FENCE_LINE.match(line):
            continue
        if not inside and line.strip() == "```output":
            before = [l for l in lines[max(0, index - 6):index] if l.strip()]
            assert before and any("aptured" in l for l in before[-2:]), \
                f"{name}: the output block at line {index + 1} does not say where it was captured"
        inside = not inside


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_links_and_images_resolve(name):
    """Images resolve in the learning-path folder; page links are Hugo page URLs of sibling pages."""
    page_dir = "/" if name == "_index.md" else f"/{Path(name).stem}/"
    problems = []
    for is_image, target in markdown_targets(page_text(name)):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        path = target.split("#")[0]
        if is_image:
            if not (REPO_ROOT / path).is_file():
                problems.append(f"image {target} not found")
            continue
        resolved = posixpath.normpath(posixpath.join(page_dir, path))
        if resolved.startswith("/.."):
            problems.append(f"link {target} leaves the learning path")
        elif resolved == "/":
            continue
        elif not (REPO_ROOT / (resolved.strip("/") + ".md")).is_file() and not (REPO_ROOT / resolved.strip("/")).is_file():
            problems.append(f"link {target} resolves to {resolved}, which is no page or file")
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_named_kit_files_exist(name):
    missing = sorted(token for token in backticked(page_text(name))
                     if token.startswith(KIT_DIRS) and not PLACEHOLDER.search(token) and " " not in token
                     and not (REPO_ROOT / token).exists() and token not in WRITTEN_BY_SCRIPTS)
    assert not missing, f"{name} names files that do not exist: {missing}"
    for path, writer in WRITTEN_BY_SCRIPTS.items():
        assert Path(path).name in (REPO_ROOT / writer).read_text(), f"{writer} no longer writes {path}"


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_commands_name_real_scripts_and_flags(name):
    assert command_problems(page_text(name), name) == []


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_json_blocks_parse_and_configs_validate(name):
    schema = json.loads((REPO_ROOT / "configs/config.schema.json").read_text())
    for block in fenced_blocks(page_text(name), "json"):
        document = json.loads(block)
        if isinstance(document, dict) and "experiments" in document:
            jsonschema.Draft202012Validator(schema).validate(document)


def documented_columns(text: str) -> dict[str, list[str]]:
    """CSV name -> the columns a page documents: tables whose first header cell is `column`,
    under a heading that names the CSV file."""
    found: dict[str, list[str]] = {}
    current = None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        heading = re.match(r"^#+ .*?`?([\w.-]+\.csv)`?", line)
        if heading:
            current = heading.group(1)
        elif line.startswith("#"):
            current = None
        if current and re.match(r"^\|\s*column\s*\|", line) and current not in found:
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(re.sub(r"`", "", row.split("|")[1]).strip())
            found[current] = rows
    return found


# The script whose --help lists a CSV's columns: the one that writes it.
CSV_OWNERS = {"kernels.csv": "analyze_results.py", "comparison.csv": "analyze_results.py"}


def help_columns(csv_name: str) -> list[str]:
    """The columns the writing script's --help lists for one CSV file."""
    script = CSV_OWNERS.get(csv_name, "trace_breakdown.py")
    text = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), "--help"],
                          capture_output=True, text=True, check=True).stdout
    match = re.search(rf"{re.escape(csv_name)}\s[^\n]*\n((?:\s{{6,}}[^\n]+\n)+)", text)
    assert match, f"{script} --help does not list {csv_name}"
    return [column.strip() for column in match.group(1).replace("\n", " ").split(",") if column.strip()]


def test_documented_csv_columns_match_the_analysis_help():
    columns = documented_columns((REPO_ROOT / "scripts/README.md").read_text())
    assert set(columns) >= {"ops.csv", "runs.csv", "op_instances.csv", "op_stats.csv", "categories.csv",
                            "kernels.csv", "comparison.csv"}
    for csv_name, documented in columns.items():
        assert documented == help_columns(csv_name), f"{csv_name}: scripts/README.md documents {documented}"


# --- the Quick starts, end to end --------------------------------------------------------


def copy_of_repository(destination: Path) -> Path:
    """Tracked and untracked-but-not-ignored files, so the copy is what a fresh clone would hold."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    for relative in filter(None, listing.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return destination


@pytest.fixture(scope="module")
def quick_start_run(tmp_path_factory) -> dict:
    """Run the Quick start of pages 02-06, then Path 2 of _index.md, in one copy, in order."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the doc tests from the kit's venv (.venv/bin/python -m pytest): the pages call .venv/bin/python")
    workdir = copy_of_repository(tmp_path_factory.mktemp("learner") / "sme2-executorch-profiling")
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("VIRTUAL_ENV", None)
    results = {}
    for name in QUICK_START_PAGES + ["_index.md"]:
        commands = quick_start_commands(name)
        results[name] = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=workdir, env=env,
                                       capture_output=True, text=True, timeout=900)
    return {"workdir": workdir, "results": results}


@pytest.mark.parametrize("name", QUICK_START_PAGES + ["_index.md"])
def test_quick_start_runs(quick_start_run, name):
    result = quick_start_run["results"][name]
    assert result.returncode == 0, f"{name} Quick start failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_path_2_ends_with_a_report(quick_start_run):
    result = quick_start_run["results"]["_index.md"]
    assert "quick test passed" in result.stdout
    reports = list((quick_start_run["workdir"] / "out/quick_test/runs").glob("*/report.md"))
    assert reports and "SME2" in reports[0].read_text()


@pytest.mark.parametrize("name", QUICK_START_PAGES + ["07-android-pipeline.md", "08-onboard-model.md"])
def test_files_the_pages_name_were_produced(quick_start_run, name):
    workdir = quick_start_run["workdir"]
    named = sorted(token.rstrip("/") for token in backticked(page_text(name))
                   if token.startswith(PRODUCED_PREFIXES) and not PLACEHOLDER.search(token) and " " not in token)
    missing = [path for path in named if not (workdir / path).exists()]
    assert not missing, f"{name} names files the Quick starts did not produce: {missing}"


def test_documented_csv_columns_match_the_real_files(quick_start_run):
    run_dir = quick_start_run["workdir"] / "out/first_run"
    for csv_name, documented in documented_columns(page_text("06-analyze-results.md")).items():
        produced = sorted(run_dir.rglob(csv_name))
        if not produced:
            assert csv_name == "kernels.csv", f"the run produced no {csv_name}"
            continue  # needs a kernel-log runner; checked against the --help listing above
        with produced[-1].open() as handle:
            assert documented == next(csv.reader(handle)), f"{csv_name} columns differ from the page"


def manifest_paths(value, prefix: str = "") -> set[str]:
    """Dotted paths of a JSON document: `host.sme2`, `experiments[].status`."""
    paths = set()
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= manifest_paths(child, path)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for child in value:
            paths |= manifest_paths(child, f"{prefix}[]")
    return paths


def test_documented_manifest_fields_exist(quick_start_run):
    """Fields of manifest.json the pages name in a `field` table are in the real manifest."""
    manifest = json.loads((quick_start_run["workdir"] / "out/first_run/manifest.json").read_text())
    real = manifest_paths(manifest)
    for name in QUICK_START_PAGES:
        lines = page_text(name).splitlines()
        for index, line in enumerate(lines):
            if re.match(r"^\|\s*manifest field\s*\|", line):
                for row in lines[index + 2:]:
                    if not row.startswith("|"):
                        break
                    field = re.sub(r"`", "", row.split("|")[1]).strip()
                    assert field in real, f"{name}: manifest.json has no field {field}"
