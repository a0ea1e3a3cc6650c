"""Doc tests for the learning-path pages: front matter, links, commands, configs, and the
Quick start of pages 02-06 (plus Path 2 of the first page) run end to end in a temporary copy.

A page fails here when it names a script, flag, file, CSV column or manifest field that does
not exist, when a config it shows is invalid, or when its Quick start stops working.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from doc_checks import (command_problems, fenced_blocks, length_problems, only_noise_failed, sections,
                        wording_problems, words)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Page file -> Hugo weight: _index first, the numbered pages in order, next steps last.
PAGE_WEIGHTS = {
    "_index.md": 1,
    "01-overview.md": 2,
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
# The first page, where both paths start: the result first, then Path 1 and Path 2.
FIRST_PAGE = "01-overview.md"
QUICK_START_STEP_PAGES = [name for name in STEP_PAGES if name != FIRST_PAGE]
# Pages whose Quick start CI runs, in page order, in one temporary copy of the repository.
QUICK_START_PAGES = ["02-setup-environment.md", "03-build-runners.md", "04-export-model.md",
                     "05-run-mac-pipeline.md", "06-analyze-results.md"]
# Where the site publishes this learning path: internal links are absolute paths under it.
SITE_DIR = "/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling/"
# Reference material moved out of the pages: CSV columns and manifest fields are documented here.
SCRIPTS_README = "scripts/README.md"
INDEX_KEYS = ["title", "minutes_to_complete", "who_is_this_for", "learning_objectives", "prerequisites", "author",
              "skilllevels", "subjects", "armips", "tools_software_languages", "operatingsystems",
              "further_reading", "weight", "layout", "learning_path_main_page",
              # the site's front matter audit adds these
              "description", "generate_summary_faq", "rerun_summary", "rerun_faqs"]
# _next-steps.md stays the site's fixed, minimal file: further reading lives in _index.md only.
NEXT_STEPS_KEYS = ["weight", "title", "layout"]
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
    """The Quick start section of a page (the Path 2 section on the first page)."""
    _, body = split_front_matter(page_text(name))
    heading = "Path 2" if name == FIRST_PAGE else "Quick start"
    match = re.search(rf"^##+ {heading}[^\n]*\n(.*?)(?=^##? |^### |\Z)", body, re.MULTILINE | re.DOTALL)
    assert match, f"{name}: no '{heading}' heading"
    return match.group(1)


def quick_start_commands(name: str) -> str:
    """Every ```bash block of the Quick start, in order, except getting the files: the temporary
    copy of the repository the test runs in stands in for the clone or download."""
    blocks = [block for block in fenced_blocks(quick_start_section(name), "bash")
              if not re.search(r"\bgit clone\b|\bcurl\b|\bwget\b", block)]
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
        assert 3 <= len(front["learning_objectives"]) <= 4, "the site asks for three to four learning objectives"
        assert front["skilllevels"] == "Advanced" and front["subjects"] == "ML"
        for key in ("prerequisites", "armips", "tools_software_languages", "operatingsystems"):
            assert isinstance(front[key], list) and front[key], f"{key} must be a non-empty list"
    elif name == "_next-steps.md":
        assert sorted(front) == sorted(NEXT_STEPS_KEYS), f"_next-steps.md must hold only {NEXT_STEPS_KEYS}"
        assert front["title"] == "Next Steps"
    if "further_reading" in front:
        for item in front["further_reading"]:
            resource = item["resource"]
            assert resource["title"] and resource["link"].startswith(("https://", "/"))
            assert resource["type"] in ("documentation", "blog", "website")


def test_weights_follow_file_order():
    weights = [split_front_matter(page_text(name))[0]["weight"] for name in PAGE_WEIGHTS]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)


@pytest.mark.parametrize("name", QUICK_START_STEP_PAGES)
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
    """Images resolve in the learning-path folder; page links are absolute site paths of sibling pages
    (the site's rule: /learning-paths/..., never ../x/ or x.md, which break on the site)."""
    problems = []
    for is_image, target in markdown_targets(page_text(name)):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        path = target.split("#")[0]
        if is_image:
            if not (REPO_ROOT / path).is_file():
                problems.append(f"image {target} not found")
            continue
        if not path.startswith("/"):
            problems.append(f"link {target} is relative: use the absolute form {SITE_DIR}<page>/")
        elif path.endswith(".md") or ".md#" in target:
            problems.append(f"link {target} points at a .md file, which the site does not rewrite")
        elif path.startswith(SITE_DIR):
            page = path[len(SITE_DIR):].strip("/")
            if page and not (REPO_ROOT / f"{page}.md").is_file():
                problems.append(f"link {target} names no page of this learning path")
        elif not path.startswith("/learning-paths/"):
            problems.append(f"link {target} is not a learning-path URL")
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
CSV_OWNERS = {"kernels.csv": "kernel_log.py", "comparison.csv": "analyze_results.py"}


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


# --- the site's rules ------------------------------------------------------------------
# Facts from the site's own checks and guides (tools/verify_index_fields.py, the closed lists,
# .github/copilot-instructions.md, .github/instructions/*.md, the front matter audit skill).

SITE_LISTS = yaml.safe_load((REPO_ROOT / "test-cases/data/site_closed_lists.yml").read_text())
SITE_CATEGORY = "embedded-and-microcontrollers"
MAX_TOTAL_WORDS = 8000          # the whole learning path, front matter excluded
MAX_PAGE_WORDS = 2500           # one page, code included (the site flags 3,500)
MAX_SECTION_WORDS = 700         # prose of one ## section
MAX_WORDS_BETWEEN_CODE = 300    # prose between two code blocks
# The _index.md author while no person's name is known: the author test fails on it (expected).
AUTHOR_PENDING = "Author name pending"
PERSON_NAME = re.compile(r"^[A-Z][a-zA-Z'.-]+(?: [A-Z][a-zA-Z'.-]+)+$")
NOT_A_PERSON = re.compile(r"\b(maintainers?|team|kit|contributors?|pending|authors?|Arm|Ltd|Inc)\b", re.IGNORECASE)
MARKETING = re.compile(r"\b(powerful|cutting-edge|game-changing|revolutionary|seamless(ly)?)\b", re.IGNORECASE)
# Front matter keys Hugo reserves; a page may use only the ones it means.
HUGO_RESERVED = {"aliases", "build", "_build", "cascade", "date", "description", "draft", "expiryDate", "headless",
                 "isCJKLanguage", "keywords", "lastmod", "layout", "linkTitle", "markup", "menus", "outputs",
                 "params", "publishDate", "resources", "sitemap", "slug", "summary", "title", "translationKey",
                 "type", "url", "weight"}
PAGE_RESERVED_USE = {"title", "weight", "layout", "description"}
NOT_A_PAGE = {"build": {"list": "never", "render": "never", "publishResources": False}, "draft": True}


def page_body(name: str) -> str:
    return split_front_matter(page_text(name))[1]


def markdown_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return sorted(set(listing.split()))


def index_author_is_pending() -> bool:
    return split_front_matter(page_text("_index.md"))[0].get("author") == AUTHOR_PENDING


def test_index_uses_the_closed_vocabularies():
    front, body = split_front_matter(page_text("_index.md"))
    missing = [key for key in SITE_LISTS["required_index_fields"] if key not in front]
    assert not missing, f"_index.md lacks {missing}"
    assert front["skilllevels"] in SITE_LISTS["skilllevels"]
    all_subjects = {subject for subjects in SITE_LISTS["subjects"].values() for subject in subjects}
    assert front["subjects"] in all_subjects, f"subjects {front['subjects']!r} is not in the site's closed list"
    category_subjects = SITE_LISTS["subjects"].get(SITE_CATEGORY)
    assert category_subjects is None or front["subjects"] in category_subjects
    wrong_os = [entry for entry in front["operatingsystems"] if entry not in SITE_LISTS["operatingsystems"]]
    assert not wrong_os, f"operatingsystems {wrong_os} are not in the site's closed list"
    specific = [ip for ip in front["armips"] if re.search(r"\d|Armv", ip)]
    assert not specific, f"armips lists Arm IP families, not CPU models or architecture versions: {specific}"
    for key in ("generate_summary_faq", "rerun_summary", "rerun_faqs"):
        assert isinstance(front[key], bool), f"{key} must be true or false"
    assert front["test_maintenance"] is True, "test_maintenance: true lets the site's PR job run the code blocks"
    assert isinstance(front.get("test_images"), list) and front["test_images"], "test_maintenance needs test_images"
    assert not body.strip(), "the theme never renders the body of _index.md: it holds metadata only"


@pytest.mark.xfail(index_author_is_pending(), strict=True,
                   reason="no person's name is known for the author field yet (the repository history names none)")
def test_index_author_is_a_person():
    author = split_front_matter(page_text("_index.md"))[0]["author"]
    names = author if isinstance(author, list) else [name.strip() for name in str(author).split(",")]
    wrong = [name for name in names if not PERSON_NAME.match(name) or NOT_A_PERSON.search(name)]
    assert not wrong, f"author must name people, not {wrong}"


@pytest.mark.parametrize("name", [name for name in PAGE_WEIGHTS if name != "_next-steps.md"])
def test_description_is_one_plain_sentence(name):
    front, _ = split_front_matter(page_text(name))
    description = front.get("description")
    assert isinstance(description, str) and description.strip(), f"{name} has no description"
    assert description.endswith(".") and not re.search(r"\.\s+[A-Z]", description), \
        f"{name}: the description must be one sentence"
    assert 10 <= words(description) <= 45, f"{name}: a description of {words(description)} words"
    assert description.rstrip(".").lower() != front["title"].lower(), f"{name}: the description repeats the title"
    assert not MARKETING.search(description), f"{name}: no marketing words in the description"


def test_next_steps_is_the_fixed_minimal_file():
    front, body = split_front_matter(page_text("_next-steps.md"))
    assert sorted(front) == sorted(NEXT_STEPS_KEYS) and not body.strip()


@pytest.mark.parametrize("name", markdown_files())
def test_no_reserved_hugo_keys(name):
    """A reserved key such as `outputs` breaks the whole site build; pages use only the ones they mean."""
    text = page_text(name)
    if not text.startswith("---\n"):
        pytest.fail(f"{name} has no front matter: Hugo would make it an untitled page")
    front, _ = split_front_matter(text)
    used = set(front) & HUGO_RESERVED
    allowed = PAGE_RESERVED_USE if name in PAGE_WEIGHTS else set(NOT_A_PAGE) | {"description"}
    assert used <= allowed, f"{name} uses the reserved Hugo keys {sorted(used - allowed)}"


@pytest.mark.parametrize("name", [name for name in markdown_files() if name not in PAGE_WEIGHTS])
def test_files_that_are_not_pages_stay_out_of_the_site(name):
    front, _ = split_front_matter(page_text(name))
    for key, value in NOT_A_PAGE.items():
        assert front.get(key) == value, f"{name}: {key} must be {value!r} so the site neither lists nor renders it"


def test_word_counts():
    counts = {name: words(page_body(name)) for name in PAGE_WEIGHTS}
    too_long = {name: count for name, count in counts.items() if count > MAX_PAGE_WORDS}
    assert not too_long, f"pages over {MAX_PAGE_WORDS} words: {too_long}"
    assert sum(counts.values()) <= MAX_TOTAL_WORDS, f"{sum(counts.values())} words in all: {counts}"


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_sections_and_stretches_between_code_are_short(name):
    problems = length_problems(page_body(name), MAX_SECTION_WORDS, MAX_WORDS_BETWEEN_CODE)
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", list(PAGE_WEIGHTS))
def test_site_wording(name):
    problems = wording_problems(page_body(name))
    assert not problems, f"{name}: " + "; ".join(problems)


def test_the_rule_checks_catch_a_broken_page():
    """Test the test: a page breaking each wording and length rule is flagged for each."""
    long_prose = " ".join(["word"] * 720)
    body = ("## Quick start\n\nThis learning path may help. See the learning-path folder.\n\n"
            + long_prose + "\n\n```bash\nls\n```\n")
    wording = wording_problems(body)
    assert any("'learning path'" in problem for problem in wording)
    assert any("'learning-path'" in problem for problem in wording)
    assert any("not 'may'" in problem for problem in wording)
    lengths = length_problems(body, MAX_SECTION_WORDS, MAX_WORDS_BETWEEN_CODE)
    assert any(problem.startswith("section '## Quick start'") for problem in lengths)
    assert any("without a code block" in problem for problem in lengths)
    assert wording_problems("## Quick start\n\nThis Learning Path can help.\n") == []


def test_first_page_starts_both_paths_with_the_result():
    body = page_body(FIRST_PAGE)
    headings = re.findall(r"^##+ .*$", body, re.MULTILINE)
    first_section = sections(body)[0][1]
    assert "pytorch.org/blog/accelerating-on-device-ml-inference-with-executorch-and-arm-sme2" in first_section
    assert "1,163 ms" in first_section and "298 ms" in first_section, "the published SqueezeSAM figures come first"
    for wanted in ("### Path 1", "### Path 2"):
        assert any(heading.startswith(wanted) for heading in headings), f"{FIRST_PAGE} has no {wanted!r}"
    assert "agentic-kits/" in body and headings[-1] == LAST_HEADING


PLACEHOLDERS = re.compile(r"YOUR-ORG|YOUR-REPO|example\.com|path/to/|sme2-executorch-profiling|LP_REPO_URL|LP_BUNDLE_URL")


@pytest.mark.parametrize("name", markdown_files())
def test_no_placeholders_or_wrong_folder_names(name):
    """A reader gets the kit with real commands: no placeholder addresses, and the real folder name."""
    found = sorted(set(PLACEHOLDERS.findall(page_text(name))))
    assert not found, f"{name} still has {found}"


def test_page_03_prints_the_switches_it_shows():
    """The SME switches page 03 prints from the build plan are what build_runners.py plans today."""
    body = page_body("03-build-runners.md")
    match = re.search(r"```bash\n(\.venv/bin/python scripts/build_runners\.py --flavor source --platform mac "
                      r"--dry-run[^`]*?)```.*?```output\n(.*?)```", body, re.DOTALL)
    assert match, "page 03 no longer shows the dry-run switches and their output"
    command = match.group(1).replace(".venv/bin/python", sys.executable)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == match.group(2), f"the plan prints {result.stdout!r}"


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
    """Run the Quick start of pages 02-06, then Path 2 of the first page, in one copy, in order."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the doc tests from the kit's venv (.venv/bin/python -m pytest): the pages call .venv/bin/python")
    workdir = copy_of_repository(tmp_path_factory.mktemp("learner") / "sme-executorch-profiling")
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("VIRTUAL_ENV", None)
    results = {}
    for name in QUICK_START_PAGES + [FIRST_PAGE]:
        commands = quick_start_commands(name)
        results[name] = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=workdir, env=env,
                                       capture_output=True, text=True, timeout=900)
    return {"workdir": workdir, "results": results}


@pytest.mark.parametrize("name", QUICK_START_PAGES + [FIRST_PAGE])
def test_quick_start_runs(quick_start_run, name):
    result = quick_start_run["results"][name]
    if only_noise_failed(result, quick_start_run["workdir"]):
        return  # the machine was too noisy for a tight median, said plainly; everything else held
    assert result.returncode == 0, f"{name} Quick start failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_path_2_ends_with_a_report(quick_start_run):
    result = quick_start_run["results"][FIRST_PAGE]
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
    for csv_name, documented in documented_columns(page_text(SCRIPTS_README)).items():
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
    tables = 0
    for name in QUICK_START_PAGES + [SCRIPTS_README]:
        lines = page_text(name).splitlines()
        for index, line in enumerate(lines):
            if re.match(r"^\|\s*manifest field\s*\|", line):
                tables += 1
                for row in lines[index + 2:]:
                    if not row.startswith("|"):
                        break
                    field = re.sub(r"`", "", row.split("|")[1]).strip()
                    assert field in real, f"{name}: manifest.json has no field {field}"
    assert tables >= 2, "the manifest field tables of page 05 and scripts/README.md were not found"
