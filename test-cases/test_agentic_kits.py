"""The agentic kits: strict structure, real commands, real error lines, and a real run on Linux.

Every kit in agentic-kits/ has one parseable shape (see ``parse_kit``): YAML front matter
(name, description, inputs, produces, estimated_minutes, and the Hugo keys build and draft), then the sections Objective,
Prerequisites (a table of command and expected result), Steps and Success criteria (a
checklist of commands); the troubleshooting kit adds Failure modes before Success criteria.
Each ``### Step N: title [tag] ...`` has exactly four parts in this order: **Command** (one
fenced bash block), **Expected** (prose), **Validate** (one fenced bash block that exits 0 on
success) and **On failure** (prose). Tags say why a step cannot run everywhere; the others are
the steps an assistant runs without a human on any host, Linux included.

The tests parse every kit, check the scripts and flags they name with the shared checker
(doc_checks.py), check that every error line quoted in the troubleshooting kit is printed by
the script it names (matching the script's string templates, and for some failures by really
triggering them), and run the setup -> pipeline -> validation -> triage steps that Linux can
run, in order, in a temporary copy of the repository, each followed by its Validate command.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from doc_checks import command_problems, only_noise_failed

REPO_ROOT = Path(__file__).resolve().parent.parent
KITS_DIR = REPO_ROOT / "agentic-kits"
KIT_NAMES = ("setup-agent", "pipeline-agent", "validation-agent", "troubleshooting-agent", "onboarding-agent")
# The kits that run on Linux end to end, in the order a learner follows them.
RUN_ORDER = ("setup-agent", "pipeline-agent", "validation-agent", "troubleshooting-agent")
# "Setup and execution" for the automation ratio the README states.
AUTOMATION_KITS = ("setup-agent", "pipeline-agent")
TAGS = {
    "human-only": "needs a person",
    "mac-only": "needs macOS on Apple Silicon",
    "android-only": "needs an Android phone over adb and the NDK",
    "source-build": "ExecuTorch source checkout from GitHub (network, tens of minutes)",
}
FRONT_MATTER_KEYS = {"name", "description", "inputs", "produces", "estimated_minutes", "build", "draft"}
SECTIONS = ("Objective", "Prerequisites", "Steps", "Success criteria")
TROUBLESHOOTING_SECTIONS = ("Objective", "Prerequisites", "Steps", "Failure modes", "Success criteria")
STEP_PARTS = ("Command", "Expected", "Validate", "On failure")
ENTRY_PARTS = ("Symptom", "Cause", "Fix", "Verify")
# The failure modes issue 8 asks the troubleshooting kit to cover, by anchor.
REQUIRED_FAILURE_MODES = (
    "python-too-old", "no-compiler-or-xcode-command-line-tools", "wheel-cmake-package-not-found",
    "runner-build-failure", "missing-operator-or-backend-at-load", "no-sme2-on-this-cpu",
    "android-ndk-missing-or-clang-older-than-18", "no-adb-device-or-several-devices", "etdump-empty-or-truncated",
    "noisy-measurements-wide-confidence-interval", "sme2-on-runner-registered-no-sme2-kernels",
    "analysis-failure-with-raw-results-intact",
)
COMMAND_TIMEOUT_S = 900


class KitFormatError(AssertionError):
    pass


@dataclass
class Step:
    number: int
    title: str
    tags: list[str]
    parts: dict[str, str]  # part name -> its text (for Command and Validate: the bash block's body)


@dataclass
class FailureMode:
    title: str
    anchor: str
    parts: dict[str, str]  # raw markdown of each part
    symptom_lines: list[str]
    symptom_sources: list[str]
    verify: str


@dataclass
class Kit:
    name: str
    text: str
    front_matter: dict
    prerequisites: list[tuple[str, str]]
    steps: list[Step]
    success_criteria: list[tuple[str, str]]
    failure_modes: list[FailureMode] = field(default_factory=list)


# ---------------------------------------------------------------- parsing

FENCE_BLOCK = re.compile(r"```(\w*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def github_anchor(heading: str) -> str:
    """The id GitHub and Hugo (autoHeadingIDType github) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def split_sections(body: str, level: str) -> list[tuple[str, str]]:
    """(heading, content) for each heading of this level ('##' or '###'), ignoring fenced code."""
    pieces: list[tuple[str, list[str]]] = []
    in_fence = False
    for line in body.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith(level + " "):
            pieces.append((line[len(level) + 1:].strip(), []))
        elif pieces:
            pieces[-1][1].append(line)
    return [(heading, "\n".join(lines).strip("\n")) for heading, lines in pieces]


def split_parts(content: str, names: tuple[str, ...], where: str) -> dict[str, str]:
    """Split content on lines that are exactly **Name**; the names must appear once each, in order."""
    labels = re.findall(r"^\*\*([^*\n]+)\*\*$", content, re.MULTILINE)
    if tuple(labels) != names:
        raise KitFormatError(f"{where}: parts are {labels}, expected exactly {list(names)}")
    chunks = re.split(r"^\*\*(?:[^*\n]+)\*\*$", content, flags=re.MULTILINE)
    if chunks[0].strip():
        raise KitFormatError(f"{where}: text before **{names[0]}**")
    parts = {name: chunk.strip() for name, chunk in zip(names, chunks[1:])}
    for name, text in parts.items():
        if not text:
            raise KitFormatError(f"{where}: **{name}** is empty")
    return parts


def only_bash_block(text: str, where: str) -> str:
    """The body of the one fenced bash block that makes up the whole text."""
    match = re.fullmatch(r"```bash\n(.*?)\n```", text.strip(), re.DOTALL)
    if not match or "```" in match.group(1):
        raise KitFormatError(f"{where}: must be exactly one fenced bash block")
    return match.group(1)


def parse_table(content: str, where: str) -> list[tuple[str, str]]:
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) < 3 or lines[0].replace(" ", "") != "|Command|Expected|" or not re.fullmatch(r"\|-+\|-+\|",
                                                                                              lines[1].replace(" ", "")):
        raise KitFormatError(f"{where}: must be a table with the header | Command | Expected |")
    rows = []
    for line in lines[2:]:
        match = re.fullmatch(r"\| `([^`]+)` \| (.+) \|", line)
        if not match:
            raise KitFormatError(f"{where}: row is not '| `command` | expected |': {line}")
        rows.append((match.group(1), match.group(2)))
    return rows


def parse_checklist(content: str, where: str) -> list[tuple[str, str]]:
    items = []
    for line in content.splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r"- \[ \] `([^`]+)` (exits 0: .+)", line)
        if not match:
            raise KitFormatError(f"{where}: item is not '- [ ] `command` exits 0: what it shows': {line}")
        items.append((match.group(1), match.group(2)))
    if not items:
        raise KitFormatError(f"{where}: no items")
    return items


def parse_steps(content: str, kit: str) -> list[Step]:
    steps = []
    if content.split("### ", 1)[0].strip():
        raise KitFormatError(f"{kit}: text between ## Steps and the first step")
    for heading, body in split_sections(content, "###"):
        match = re.fullmatch(r"Step (\d+): (.+?)((?: \[[a-z-]+\])*)", heading)
        if not match:
            raise KitFormatError(f"{kit}: step heading '{heading}' is not 'Step N: title [tag] ...'")
        number, title, tag_text = int(match.group(1)), match.group(2), match.group(3)
        tags = re.findall(r"\[([a-z-]+)\]", tag_text)
        where = f"{kit} step {number}"
        unknown = [tag for tag in tags if tag not in TAGS]
        if unknown:
            raise KitFormatError(f"{where}: unknown tags {unknown}; known: {sorted(TAGS)}")
        if number != len(steps) + 1:
            raise KitFormatError(f"{where}: steps must be numbered 1, 2, 3, ... (got {number} after {len(steps)})")
        parts = split_parts(body, STEP_PARTS, where)
        for name in ("Command", "Validate"):
            parts[name] = only_bash_block(parts[name], f"{where} **{name}**")
        for name in ("Expected", "On failure"):
            if "```" in parts[name]:
                raise KitFormatError(f"{where} **{name}**: prose only, no code blocks")
        steps.append(Step(number, title, tags, parts))
    if not steps:
        raise KitFormatError(f"{kit}: no steps")
    return steps


SOURCE_NAME = re.compile(r"`((?:scripts|runner)/[\w.-]+\.(?:py|sh|cpp))")


def parse_failure_modes(content: str, kit: str) -> list[FailureMode]:
    modes = []
    for heading, body in split_sections(content, "###"):
        where = f"{kit} failure mode '{heading}'"
        if not re.fullmatch(r"[A-Za-z0-9 ()-]+", heading):
            raise KitFormatError(f"{where}: use letters, digits, spaces, hyphens and parentheses only, so that "
                                 "GitHub and Hugo give it the same anchor")
        parts = split_parts(body, ENTRY_PARTS, where)
        blocks = FENCE_BLOCK.findall(parts["Symptom"])
        if len(blocks) != 1 or blocks[0][0] != "text":
            raise KitFormatError(f"{where}: **Symptom** needs exactly one fenced text block of error lines")
        sources = SOURCE_NAME.findall(FENCE_BLOCK.sub("", parts["Symptom"]))
        if not sources:
            raise KitFormatError(f"{where}: **Symptom** must name the script(s) that print the lines")
        fix_blocks = FENCE_BLOCK.findall(parts["Fix"])
        if len(fix_blocks) > 1 or any(lang != "bash" for lang, _ in fix_blocks):
            raise KitFormatError(f"{where}: **Fix** holds at most one fenced bash block")
        verify = only_bash_block(parts["Verify"], f"{where} **Verify**")
        lines = [line for line in blocks[0][1].splitlines() if line.strip()]
        modes.append(FailureMode(heading, github_anchor(heading), parts, lines, sources, verify))
    if not modes:
        raise KitFormatError(f"{kit}: no failure modes")
    return modes


def parse_kit(path: Path) -> Kit:
    text = path.read_text()
    kit = path.stem
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        raise KitFormatError(f"{kit}: no YAML front matter")
    front = yaml.safe_load(match.group(1))
    if set(front) != FRONT_MATTER_KEYS:
        raise KitFormatError(f"{kit}: front matter keys {sorted(front)}, expected {sorted(FRONT_MATTER_KEYS)}")
    body = text[match.end():]
    preamble = body.split("\n## ", 1)[0]
    if not re.fullmatch(r"\s*# [^\n]+\s*", preamble):
        raise KitFormatError(f"{kit}: only a '# title' line may come before the first section")
    sections = split_sections(body, "##")
    wanted = TROUBLESHOOTING_SECTIONS if kit == "troubleshooting-agent" else SECTIONS
    if tuple(name for name, _ in sections) != wanted:
        raise KitFormatError(f"{kit}: sections {[n for n, _ in sections]}, expected {list(wanted)}")
    content = dict(sections)
    if not content["Objective"].strip():
        raise KitFormatError(f"{kit}: empty Objective")
    result = Kit(kit, text, front, parse_table(content["Prerequisites"], f"{kit} prerequisites"),
                 parse_steps(content["Steps"], kit), parse_checklist(content["Success criteria"], f"{kit} success"))
    if kit == "troubleshooting-agent":
        result.failure_modes = parse_failure_modes(content["Failure modes"], kit)
    return result


@functools.lru_cache(maxsize=None)
def load_kit(name: str) -> Kit:
    return parse_kit(KITS_DIR / f"{name}.md")


def all_commands(kit: Kit) -> list[str]:
    """Every shell command text of a kit: prerequisites, steps, fixes, verifications, success criteria."""
    commands = [command for command, _ in kit.prerequisites] + [command for command, _ in kit.success_criteria]
    for step in kit.steps:
        commands += [step.parts["Command"], step.parts["Validate"]]
    for mode in kit.failure_modes:
        commands += [body for lang, body in FENCE_BLOCK.findall(mode.parts["Fix"]) if lang == "bash"]
        commands.append(mode.verify)
    return commands


# ---------------------------------------------------------------- structure and references

@pytest.mark.parametrize("name", KIT_NAMES)
def test_kit_parses_into_the_strict_structure(name: str) -> None:
    kit = load_kit(name)
    front = kit.front_matter
    assert front["name"] == name
    assert isinstance(front["description"], str) and len(front["description"]) > 40
    assert isinstance(front["estimated_minutes"], int) and front["estimated_minutes"] > 0
    assert front["inputs"] and all(set(i) == {"name", "description"} for i in front["inputs"]), front["inputs"]
    assert front["produces"] and all(set(o) == {"path", "description"} for o in front["produces"]), front["produces"]
    assert front["build"] == {"list": "never", "render": "never", "publishResources": False} and front["draft"] is True
    assert kit.prerequisites and kit.success_criteria
    for step in kit.steps:
        assert step.parts["Command"].strip() and step.parts["Validate"].strip()


def test_every_kit_of_the_folder_is_checked() -> None:
    on_disk = {path.stem for path in KITS_DIR.glob("*.md")} - {"README"}
    assert on_disk == set(KIT_NAMES)


def test_the_parser_rejects_a_step_missing_a_part(tmp_path: Path) -> None:
    """The structure check has teeth: drop one part of one step and parsing fails, naming it."""
    text = (KITS_DIR / "setup-agent.md").read_text()
    broken = tmp_path / "setup-agent.md"
    broken.write_text(text.replace("**Validate**", "**Check**", 1))
    with pytest.raises(KitFormatError, match="step 1: parts are"):
        parse_kit(broken)
    broken.write_text(text.replace("```bash\npython3 scripts/validate_setup.py --prerequisites\n```",
                                   "python3 scripts/validate_setup.py --prerequisites", 1))
    with pytest.raises(KitFormatError, match=r"step 1 \*\*Command\*\*: must be exactly one fenced bash block"):
        parse_kit(broken)


@pytest.mark.parametrize("name", KIT_NAMES)
def test_every_command_names_existing_scripts_and_flags(name: str) -> None:
    kit = load_kit(name)
    # The checker reads fenced bash blocks; inline commands (table, checklist) are wrapped as one.
    markdown = kit.text + "".join(f"\n```bash\n{command}\n```\n" for command, _ in
                                  kit.prerequisites + kit.success_criteria)
    assert command_problems(markdown, f"agentic-kits/{name}.md") == []


def markdown_links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", FENCE_BLOCK.sub("", text))


def anchors_of(path: Path) -> set[str]:
    text = FENCE_BLOCK.sub("", path.read_text())
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("name", KIT_NAMES + ("README",))
def test_links_and_anchors_resolve(name: str) -> None:
    source = KITS_DIR / f"{name}.md"
    problems = []
    for link in markdown_links(source.read_text()):
        if re.match(r"[a-z]+://", link):
            continue
        target_text, _, anchor = link.partition("#")
        target = (source.parent / target_text).resolve() if target_text else source
        if not target.exists():
            problems.append(f"{link}: {target} does not exist")
        elif anchor and anchor not in anchors_of(target):
            problems.append(f"{link}: no heading with anchor #{anchor} in {target.name}")
    assert problems == []


def test_troubleshooting_covers_the_required_failure_modes() -> None:
    anchors = [mode.anchor for mode in load_kit("troubleshooting-agent").failure_modes]
    assert len(anchors) == len(set(anchors))
    assert [a for a in REQUIRED_FAILURE_MODES if a not in anchors] == []


def test_human_only_fixes_say_so() -> None:
    modes = {mode.anchor: mode for mode in load_kit("troubleshooting-agent").failure_modes}
    for anchor in ("no-compiler-or-xcode-command-line-tools", "no-adb-device-or-several-devices"):
        assert "**Human-only**" in modes[anchor].parts["Fix"], anchor


def test_scripts_that_point_to_a_failure_mode_name_an_existing_one() -> None:
    """build_runners.py says "see 'runner build failure' in agentic-kits/troubleshooting-agent.md"."""
    titles = {mode.title.lower() for mode in load_kit("troubleshooting-agent").failure_modes}
    named = set()
    for script in sorted((REPO_ROOT / "scripts").glob("*.py")):
        for parts in source_templates(str(script.relative_to(REPO_ROOT))):
            text = "\x00".join(parts)
            named |= {m.lower() for m in re.findall(r"see '([^']+)' in agentic-kits/troubleshooting-agent\.md", text)}
    assert named, "no script points to a failure mode any more: drop this test or the pointer"
    assert sorted(named - titles) == []


def test_automation_ratio_in_the_readme_matches_the_kits() -> None:
    """The README states how many setup and execution steps need no human; recount them."""
    steps = [step for name in AUTOMATION_KITS for step in load_kit(name).steps]
    human = [step for step in steps if "human-only" in step.tags]
    automated = len(steps) - len(human)
    percent = round(100 * automated / len(steps))
    readme = (KITS_DIR / "README.md").read_text()
    stated = re.search(r"(\d+) of (\d+) setup and execution steps \((\d+) %\) run without a human", readme)
    assert stated, "README.md must state '<n> of <m> setup and execution steps (<p> %) run without a human'"
    assert tuple(map(int, stated.groups())) == (automated, len(steps), percent)
    assert percent >= 80
    for step in human:  # each human-only step is named in the README
        assert step.title in readme, step.title


# ---------------------------------------------------------------- error lines are real

PLACEHOLDER = r"<[^<>\n]+>"
VALUE_GROUP = re.compile(rf"(?:{PLACEHOLDER}|[\w./:-])*{PLACEHOLDER}(?:{PLACEHOLDER}|[\w./:-])*")
RICH_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|red|green|yellow|blue|cyan|magenta)(?: (?:bold|red|green|yellow))*\]"
                         r"|\[/\]")
PRINTF_SPEC = re.compile(r"%(?:\([a-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifgrxz]")
INTERPOLATION = "\x00"


def python_templates(source: str) -> tuple[list[tuple[str, ...]], set[float]]:
    """String templates of a Python file (f-strings, concatenations, %-formats) and its numbers."""
    tree = ast.parse(source)
    templates, numbers = [], set()

    def template(node: ast.AST):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(value.value if isinstance(value, ast.Constant) else INTERPOLATION
                           for value in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = template(node.left), template(node.right)
            if left is None and right is None:
                return None
            return (INTERPOLATION if left is None else left) + (INTERPOLATION if right is None else right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str):
            return PRINTF_SPEC.sub(INTERPOLATION, node.left.value)
        return None

    for node in ast.walk(tree):
        text = template(node)
        if text is not None:
            templates.append(text)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            numbers.add(float(node.value))
    return templates, numbers


def shell_templates(source: str) -> tuple[list[str], set[float]]:
    """Double-quoted strings of a shell script, with $VAR, ${...}, $(...) and %s as interpolations."""
    templates = []
    for line in source.splitlines():
        for quoted in re.findall(r'"((?:[^"\\$]|\\.|\$\([^)]*\)|\$\{[^}]*\}|\$[\w*@#?]|\$)*)"', line):
            text = re.sub(r"\$\([^)]*\)|\$\{[^}]*\}|\$[\w*@#?]+", INTERPOLATION, quoted)
            templates.append(PRINTF_SPEC.sub(INTERPOLATION, text.replace('\\"', '"')))
    numbers = {float(n) for n in re.findall(r"\b\d+\b", source)}
    return templates, numbers


def cpp_templates(source: str) -> tuple[list[str], set[float]]:
    """The messages of fail(...) calls and every string literal of a C++ file."""
    literal = r'"(?:[^"\\]|\\.)*"'
    templates = [PRINTF_SPEC.sub(INTERPOLATION, bytes(s[1:-1], "utf-8").decode("unicode_escape"))
                 for s in re.findall(literal, source)]
    for argument in re.findall(rf"\bfail\(((?:{literal}|[^;])*?)\);", source):
        pieces = re.split(f"({literal})", argument)
        text = ""
        for index, piece in enumerate(pieces):
            if index % 2:
                text += bytes(piece[1:-1], "utf-8").decode("unicode_escape")
            elif piece.strip(" \n+"):
                text += INTERPOLATION
        templates.append(text)
    return templates, {float(n) for n in re.findall(r"\b\d+\b", source)}


@functools.lru_cache(maxsize=None)
def source_templates(relative: str) -> tuple[tuple[str, ...], ...]:
    """Each template as its literal parts (an interpolation between consecutive parts)."""
    return read_source(relative)[0]


@functools.lru_cache(maxsize=None)
def read_source(relative: str) -> tuple[tuple[tuple[str, ...], ...], frozenset[float]]:
    path = REPO_ROOT / relative
    source = path.read_text()
    reader = {".py": python_templates, ".sh": shell_templates, ".cpp": cpp_templates}[path.suffix]
    texts, numbers = reader(source)
    templates = set()
    for text in texts:
        text = RICH_MARKUP.sub("", text).rstrip("\n")
        parts = tuple(text.split(INTERPOLATION))
        if sum(map(len, parts)) >= 3:  # a bare "{error}" or "; " matches anything
            templates.add(parts)
    return tuple(sorted(templates)), frozenset(numbers)


class TemplateMatcher:
    """Does a quoted line (placeholders <...> for values) come out of these templates?

    A line matches a template when the template's literal parts appear in it in order, and
    every interpolation is filled by a placeholder (or a path made with placeholders), by a
    number the script defines, or by text that itself matches a template (messages built from
    messages, such as `error: {error}`). A literal line cannot hide behind a placeholder: a
    placeholder is only accepted where the script interpolates a value.
    """

    def __init__(self, sources: list[str]) -> None:
        self.templates = sorted({t for s in sources for t in read_source(s)[0]}, key=lambda t: -sum(map(len, t)))
        self.numbers = frozenset().union(*(read_source(s)[1] for s in sources))

    @functools.lru_cache(maxsize=None)
    def matches(self, text: str, depth: int = 3) -> bool:
        for parts in self.templates:
            if all(part in text for part in parts) and self._fits(text, parts, depth):
                return True
        return False

    def _fits(self, text: str, parts: tuple[str, ...], depth: int) -> bool:
        if len(parts) == 1:
            return text == parts[0]
        if not text.startswith(parts[0]) or not text.endswith(parts[-1]):
            return False
        return self._fill(text, len(parts[0]), parts, 1, depth)

    def _fill(self, text: str, position: int, parts: tuple[str, ...], index: int, depth: int) -> bool:
        literal = parts[index]
        if index == len(parts) - 1:
            end = len(text) - len(literal)
            return end >= position and self._value(text[position:end], depth)
        start = position
        while (found := text.find(literal, start)) != -1:
            if self._value(text[position:found], depth) and \
                    self._fill(text, found + len(literal), parts, index + 1, depth):
                return True
            start = found + 1
        return False

    def _value(self, value: str, depth: int) -> bool:
        if value == "" or VALUE_GROUP.fullmatch(value):
            return True
        try:
            if float(value) in self.numbers:
                return True
        except ValueError:
            pass
        return depth > 0 and self.matches(value, depth - 1)


def symptom_regex(line: str) -> re.Pattern:
    """The quoted line as a pattern for real output: each placeholder stands for any text."""
    pieces = re.split(f"({PLACEHOLDER})", line)
    return re.compile("".join(".+?" if index % 2 else re.escape(piece) for index, piece in enumerate(pieces)))


def failure_modes() -> dict[str, FailureMode]:
    return {mode.anchor: mode for mode in load_kit("troubleshooting-agent").failure_modes}


def test_symptom_lines_are_printed_by_the_scripts_they_name() -> None:
    problems = []
    for mode in failure_modes().values():
        missing = [s for s in mode.symptom_sources if not (REPO_ROOT / s).is_file()]
        if missing:
            problems.append(f"{mode.title}: names {missing}, which do not exist")
            continue
        matcher = TemplateMatcher(mode.symptom_sources)
        for line in mode.symptom_lines:
            literal = re.sub(PLACEHOLDER, "", line)
            if len(literal) < 15:
                problems.append(f"{mode.title}: '{line}' is mostly placeholders")
            elif not matcher.matches(line):
                problems.append(f"{mode.title}: '{line}' is not printed by {mode.symptom_sources}")
    assert problems == []


def test_the_symptom_matcher_rejects_invented_and_edited_lines() -> None:
    matcher = TemplateMatcher(["scripts/setup_repo.sh", "scripts/validate_setup.py"])
    real = ("setup_repo.sh: error: Python <version> ('<python>') is too old, this kit needs Python 3.10 or newer; "
            "fix: rerun with PYTHON=python3.11 (or another 3.10+ interpreter)")
    assert matcher.matches(real)
    assert not matcher.matches(real.replace("too old", "very old"))
    assert not matcher.matches(real.replace("3.10 or newer", "<version> or newer"))  # placeholder over a literal
    assert not matcher.matches("setup_repo.sh: error: the compiler exploded; fix: buy a new one")


def all_sources() -> list[str]:
    paths = sorted((REPO_ROOT / "scripts").glob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.sh"))
    return [str(p.relative_to(REPO_ROOT)) for p in paths] + ["runner/profiling_runner.cpp"]


@pytest.mark.parametrize("name", KIT_NAMES)
def test_output_quoted_in_on_failure_is_real(name: str) -> None:
    """On failure quotes pieces of error lines (`error: Android NDK not found`, `cannot load method ...`).

    Each quoted piece, cut at placeholders, '...' and numbers, must be literal text of some
    script's message: a placeholder may stand for a value, never for words a script prints.
    """
    literals = [part for source in all_sources() for template in source_templates(source) for part in template]
    problems = []
    for step in load_kit(name).steps:
        for span in re.findall(r"`([^`]+)`", step.parts["On failure"]):
            if " " not in span or re.match(r"(?:\.venv/bin/python|\./scripts/|python3? |git |adb )", span):
                continue  # a command, not output
            message = re.sub(r"^(?:setup_repo\.sh: )?error: ", "", span)  # the frame every error line has
            for fragment in re.split(rf"{PLACEHOLDER}|\.\.\.|\b\d+(?:\.\d+)?\b", message):
                if len(fragment.strip()) >= 4 and not any(fragment.strip() in literal for literal in literals):
                    problems.append(f"step {step.number}: '{fragment.strip()}' of `{span}` is printed by no script")
    assert problems == []


def assert_printed(anchor: str, output: str) -> None:
    """Some line of the real output is one of the failure mode's symptom lines."""
    patterns = [symptom_regex(line) for line in failure_modes()[anchor].symptom_lines]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    assert any(p.fullmatch(line) for p in patterns for line in lines), \
        f"none of the '{anchor}' symptoms is in:\n{output}"


def run(command: list[str] | str, cwd: Path, env: dict | None = None, timeout: float = COMMAND_TIMEOUT_S,
        ) -> subprocess.CompletedProcess:
    shell = isinstance(command, str)
    argv = ["bash", "-e", "-o", "pipefail", "-c", command] if shell else command
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def wide_env(**extra: str) -> dict[str, str]:
    """rich wraps at 80 columns without a terminal; error lines are soft-wrapped, tables are not."""
    return {**os.environ, "COLUMNS": "400", **extra}


def test_triggered_no_sme2_on_this_cpu(venv_python: str) -> None:
    report = json.loads(run([venv_python, "scripts/validate_setup.py", "--require-sme2", "--json"],
                            REPO_ROOT).stdout)
    if report["host"]["sme2"]:
        pytest.skip("this CPU has SME2")
    check = next(c for c in report["checks"] if c["id"] == "sme2")
    assert check["status"] == "FAIL"
    assert_printed("no-sme2-on-this-cpu", check["detail"])


def test_triggered_no_compiler(tmp_path: Path) -> None:
    """setup_repo.sh stops before creating anything when $CC names no compiler."""
    result = run(["bash", str(REPO_ROOT / "scripts/setup_repo.sh"), "--venv", str(tmp_path / "venv")], REPO_ROOT,
                 env=wide_env(CC=str(tmp_path / "no-such-cc")))
    assert result.returncode != 0
    assert not (tmp_path / "venv").exists()
    assert_printed("no-compiler-or-xcode-command-line-tools", result.stderr)


def test_triggered_runner_build_failure(tmp_path: Path, venv_python: str) -> None:
    """A C++ compiler that does not work stops CMake configure; runners/ is left alone."""
    result = run([venv_python, "scripts/build_runners.py", "--flavor", "prebuilt", "--force",
                  "--build-dir", str(tmp_path / "build"), "--runners-dir", str(tmp_path / "runners")],
                 REPO_ROOT, env=wide_env(CXX="/bin/false", CC="/bin/false"))
    assert result.returncode != 0
    assert not (tmp_path / "runners" / "prebuilt").exists()
    assert_printed("runner-build-failure", result.stdout + result.stderr)


def test_triggered_no_adb_device_or_several(tmp_path: Path, venv_python: str) -> None:
    adb = REPO_ROOT / "test-cases/adb_standin/adb"
    devices = tmp_path / "devices"
    devices.mkdir()
    command = [venv_python, "scripts/android_pipeline.py", "--config", "configs/android_template.json",
               "--adb", str(adb)]
    none = run(command, REPO_ROOT, env=wide_env(ADB_STANDIN_ROOT=str(devices)))
    assert none.returncode != 0
    assert_printed("no-adb-device-or-several-devices", none.stdout + none.stderr)
    for serial in ("PHONE1", "PHONE2"):
        (devices / serial / ".standin").mkdir(parents=True)
    several = run(command, REPO_ROOT, env=wide_env(ADB_STANDIN_ROOT=str(devices)))
    assert several.returncode != 0
    assert_printed("no-adb-device-or-several-devices", several.stdout + several.stderr)
    assert "PHONE1" in several.stdout + several.stderr


def test_triggered_empty_and_truncated_etdump(tmp_path: Path, venv_python: str, prebuilt_runner: Path,
                                              toy_pte: Path) -> None:
    etdump = tmp_path / "trace.etdump"
    subprocess.run([str(prebuilt_runner), "--model_path", str(toy_pte), "--num_executions", "2",
                    "--etdump_path", str(etdump)], check=True, capture_output=True)
    data = etdump.read_bytes()
    for name, content in (("empty.etdump", b""), ("truncated.etdump", data[: len(data) // 2])):
        broken = tmp_path / name
        broken.write_bytes(content)
        result = run([venv_python, "scripts/analyze_results.py", "--etdump", str(broken)], REPO_ROOT,
                     env=wide_env())
        assert result.returncode != 0
        assert_printed("etdump-empty-or-truncated", result.stdout + result.stderr)


# ---------------------------------------------------------------- the kits, run on Linux

@dataclass
class KitRun:
    root: Path
    done: set[str] = field(default_factory=set)  # the kits that ran to the end


def copy_repository(destination: Path, venv_prefix: Path) -> None:
    """The files a checkout has (tracked, plus new ones not ignored), the test's venv, built runners."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(venv_prefix, target_is_directory=True)
    if (REPO_ROOT / "runners/prebuilt/runner.json").is_file():
        shutil.copytree(REPO_ROOT / "runners/prebuilt", destination / "runners/prebuilt")


@pytest.fixture(scope="module")
def kit_run(tmp_path_factory) -> KitRun:
    root = tmp_path_factory.mktemp("kit_run")
    copy_repository(root, Path(sys.prefix))
    return KitRun(root)


def run_kits_before(kit_run: KitRun, name: str) -> None:
    """The kits that come before this one in RUN_ORDER, when this test runs alone."""
    for earlier in RUN_ORDER[:RUN_ORDER.index(name)] if name in RUN_ORDER else RUN_ORDER[:1]:
        if earlier not in kit_run.done:
            run_kit(kit_run, earlier)


def run_checked(kit_run: KitRun, command: str, what: str) -> None:
    result = run(command, kit_run.root, env=wide_env())
    if only_noise_failed(result, kit_run.root, command):
        return  # too noisy a machine for a tight median, said plainly; every other check held
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n$ {command}\n"
                                    f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")


def run_kit(kit_run: KitRun, name: str) -> list[str]:
    """Prerequisites, then each step's Command and Validate in order, then the success criteria."""
    kit = load_kit(name)
    for command, _ in kit.prerequisites:
        run_checked(kit_run, command, f"{name} prerequisite `{command}`")
    skipped = []
    for step in kit.steps:
        if step.tags:
            skipped.append(f"step {step.number} ({', '.join(TAGS[tag] for tag in step.tags)})")
            continue
        run_checked(kit_run, step.parts["Command"], f"{name} step {step.number} Command")
        run_checked(kit_run, step.parts["Validate"], f"{name} step {step.number} Validate")
    for command, _ in kit.success_criteria:
        run_checked(kit_run, command, f"{name} success criterion `{command}`")
    kit_run.done.add(name)
    return skipped


def test_setup_kit_runs_on_linux(kit_run: KitRun) -> None:
    skipped = run_kit(kit_run, "setup-agent")
    assert any("needs a person" in s for s in skipped)
    assert (kit_run.root / "runners/prebuilt/profiling_runner").is_file()


def test_pipeline_kit_runs_on_linux(kit_run: KitRun) -> None:
    run_kits_before(kit_run, "pipeline-agent")
    run_kit(kit_run, "pipeline-agent")
    run_dir = kit_run.root / (kit_run.root / "out/kits/backends_run_dir.txt").read_text().strip()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [e["dir"] for e in manifest["experiments"]] == ["portable_t1", "xnnpack_t1"]
    assert run_dir.resolve().is_relative_to(kit_run.root.resolve())


def test_validation_kit_runs_on_linux(kit_run: KitRun) -> None:
    run_kits_before(kit_run, "validation-agent")
    run_kit(kit_run, "validation-agent")
    headline = (kit_run.root / "out/kits/headline.txt").read_text()
    assert "portable_t1->xnnpack_t1 speedup" in headline


def test_troubleshooting_triage_runs_on_linux(kit_run: KitRun) -> None:
    """The triage steps pass on a sound run, and so do the Verify commands that apply to Linux."""
    run_kits_before(kit_run, "troubleshooting-agent")
    run_kit(kit_run, "troubleshooting-agent")
    modes = failure_modes()
    for anchor in ("no-compiler-or-xcode-command-line-tools", "wheel-cmake-package-not-found",
                   "runner-build-failure", "missing-operator-or-backend-at-load", "etdump-empty-or-truncated",
                   "analysis-failure-with-raw-results-intact"):
        run_checked(kit_run, modes[anchor].verify, f"Verify of '{modes[anchor].title}'")


def test_triggered_analysis_failure_keeps_the_raw_results(kit_run: KitRun, tmp_path: Path) -> None:
    """A truncated ETDump in a copy of the kit's run: the analysis fails, the pipeline says what is kept."""
    run_kits_before(kit_run, "validation-agent")
    kit_run_dir = kit_run.root / (kit_run.root / "out/kits/backends_run_dir.txt").read_text().strip()
    run_dir = tmp_path / "run"
    shutil.copytree(kit_run_dir, run_dir)
    etdump = run_dir / "xnnpack_t1/trace.etdump"
    etdump.write_bytes(etdump.read_bytes()[:64])
    manifest_before = (run_dir / "manifest.json").read_bytes()
    result = run([str(kit_run.root / ".venv/bin/python"), "scripts/mac_pipeline.py", "--config",
                  "out/kits/backends.json", "--analysis-only", "--run-dir", str(run_dir)], kit_run.root,
                 env=wide_env())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert_printed("analysis-failure-with-raw-results-intact", output)
    assert_printed("etdump-empty-or-truncated", output)
    assert (run_dir / "manifest.json").read_bytes() == manifest_before
    assert (run_dir / "xnnpack_t1/timing.json").is_file()


@pytest.mark.slow
def test_onboarding_kit_runs_on_linux(kit_run: KitRun) -> None:
    """Two more exports and a run (about 90 s): deselected by default, run with -m slow."""
    run_kits_before(kit_run, "onboarding-agent")
    run_kit(kit_run, "onboarding-agent")


# ---------------------------------------------------------------- every error line has a way out

FIX_CLAUSE = re.compile(r";\s*\S|\bfix\b|\b(?:pass|run|rerun|re-run|use|check|install|build|rebuild|export|re-export|"
                        r"restore|choose|set|give|add|remove|point|move|free|edit|save|name|regenerate|copy|attach|"
                        r"plug|open|reinstall|recreate|update|write|download|put|see|select|delete|leave|return|fix|raise|reconnect)\b"
                        r"|\be\.g\.",
                        re.IGNORECASE)


# Lines the collector cannot see a fix in, each with why it is acceptable or who fixes it. Keep this short: a new
# line belongs here only with a reason; most new lines should name their fix instead.
NO_FIX_ALLOWED = {
    # The fix sits in an interpolated constant (TEMPLATE_HINT) or the caller appends it.
    "<...> is not a Python file: <...>": "export_model.py: TEMPLATE_HINT says what to copy",
    "<...>: missing <...>": "validate_results.py: main() prints it with the fix",
    "<...>: cannot read <...> (<...>)": "validate_results.py: main() prints it with the fix",
    "<...>: <...> is not valid JSON (line <...>)": "validate_results.py: main() prints it with the fix",
    "<...>: <...> is not a JSON object": "validate_results.py: main() prints it with the fix",
    "<...> not found": "validate_pipeline.py: a probe error, reported as a FAIL row with its fix",
    "validate_setup.py --json gave no JSON (exit <...>): <...>": "a probe error, reported with its fix",
    # Errors in the user's own model code: the line points at the file and line to fix.
    "<...>() in <...> failed<...>: <...>": "export_model.py: names the user's function and line",
    "could not import <...><...>: <...>": "export_model.py: names the user's file and line",
    "model '<...>' does not support --dtype <...>: its SUPPORTED_DTYPES are <...>": "the alternatives are listed",
    "output <...> of the .pte has shape <...> but eager PyTorch returns <...>": "export_model.py: a bug report",
    "the .pte returned <...> outputs but eager PyTorch returned <...>": "export_model.py: a bug report",
    "'<...>' is not a list of <...> values": "generate_config.py: an interactive answer, asked again",
    # Pipeline lines (issue 15, part 1 owns these scripts): to be given fixes or failure modes there.
    "--configure-only applies to --flavor source": "build_runners.py: the flag it needs is named",
    "adb <...> failed: <...>": "android_pipeline.py (H15a)",
    "error: runner <...> was not pushed to the device": "android_pipeline.py (H15a)",
    "<...> <...> failed: <...> (log: <...>)": "mac_pipeline.py: the runner's own error line is in the log",
    "<...> <...>: the runner exited 0 but wrote no <...> (log: <...>)": "mac_pipeline.py (H15a)",
    "--only <...>: no such experiment (experiments: <...>)": "plan_runs.py: the alternatives are listed",
    "compare pair <...> -> <...> compares an experiment with itself": "plan_runs.py (H15a)",
    "the runner's timing JSON has no latencies_ms": "mac_pipeline.py (H15a)",
    "the runner's timing JSON holds a latency that is not a positive number": "mac_pipeline.py (H15a)",
    "the runner's timing JSON holds a latency that is not a number": "mac_pipeline.py (H15a)",
    "error: the runner finished but adb pull of <...> failed: <...>": "android_pipeline.py: the reason is adb's (H15a)",
    "timing round <...>: the runner wrote invalid JSON to <...>": "mac_pipeline.py (H15a)",
}


def user_error_lines(relative: str) -> list[tuple[str, ...]]:
    """The error lines a source can print, as templates: messages of the exceptions it defines and raises,
    `error:` prints, FAIL checks (detail plus fix) and the shell's `die` messages."""
    path = REPO_ROOT / relative
    source = path.read_text()
    if path.suffix == ".sh":
        texts = [t for line in source.splitlines() if re.match(r"\s*die ", line) for t in shell_templates(line)[0]]
    else:
        tree = ast.parse(source)
        own_errors = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                      and any(getattr(base, "id", "").endswith(("Error", "Exception")) for base in node.bases)}
        texts = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args \
                    and getattr(node.exc.func, "id", None) in own_errors \
                    and isinstance(node.exc.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                texts += python_templates(ast.unparse(node.exc.args[0]))[0][:1]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Check":
                values = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
                if "FAIL" in values and len(node.args) > values.index("FAIL") + 1:
                    detail = node.args[values.index("FAIL") + 1:]
                    texts.append(" ; fix: ".join(python_templates(ast.unparse(d))[0][0] if python_templates(
                        ast.unparse(d))[0] else INTERPOLATION for d in detail))
            if isinstance(node, ast.Call) and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) \
                    in ("print", "write", "exit"):
                for argument in [a for a in node.args[:1] if isinstance(a, (ast.Constant, ast.JoinedStr, ast.BinOp))]:
                    for text in python_templates(ast.unparse(argument))[0][:1]:
                        if RICH_MARKUP.sub("", text).startswith(("error: ", "interrupted: ")):
                            texts.append(text)
    lines = set()
    for text in texts:
        text = RICH_MARKUP.sub("", text).strip()
        parts = tuple(text.split(INTERPOLATION))
        if sum(map(len, parts)) >= 10:
            lines.add(parts)
    return sorted(lines)


def quoted_by_a_failure_mode(parts: tuple[str, ...], symptoms: list[str]) -> bool:
    matcher = TemplateMatcher([])
    matcher.templates = [parts]
    return any(matcher.matches(line) or matcher.matches(re.sub(r"^(?:\S+: )?error: ", "", line)) for line in symptoms)


def test_every_error_line_is_covered_by_a_failure_mode_or_names_its_fix() -> None:
    """Collected from the sources (so lines other scripts add later are covered too): each error line is quoted by
    a failure mode, or falls under 'Any other error line', which tells the assistant to apply the fix the line
    names; so the line must name one."""
    modes = failure_modes()
    assert "any-other-error-line" in modes, "the catch-all failure mode is gone"
    symptoms = [line for mode in modes.values() for line in mode.symptom_lines]
    sources = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "scripts").glob("*.py")) + \
        sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "scripts").glob("*.sh"))
    collected, problems, seen = 0, [], set()
    for source in sources:
        for parts in user_error_lines(source):
            collected += 1
            seen.add("<...>".join(parts))
            literal = " X ".join(parts)  # a fix may be interpolated: "...; {fix}"
            if not quoted_by_a_failure_mode(parts, symptoms) and not FIX_CLAUSE.search(literal) \
                    and "<...>".join(parts) not in NO_FIX_ALLOWED:
                problems.append(f"{source}: '{'<...>'.join(parts)}' names no fix and no failure mode quotes it")
    assert collected > 100, f"only {collected} error lines collected: the collector no longer sees the scripts"
    problems += [f"NO_FIX_ALLOWED lists '{line}', which no script prints any more" for line in NO_FIX_ALLOWED
                 if line not in seen]
    assert problems == []
