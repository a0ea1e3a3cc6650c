"""Checks shared by the doc tests and the agentic-kit tests.

A page or kit may only name scripts that exist and flags their ``--help`` lists. The
checker reads fenced ``bash`` blocks, joins continued lines, splits commands on shell
operators and looks at every word that names a file under ``scripts/``.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SCRIPT_WORD = re.compile(r"(?:^|/)(scripts/[\w.-]+\.(?:py|sh))$")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(markdown) if lang == language]


def shell_commands(block: str) -> list[str]:
    """One string per command: comments dropped, continuations joined, split on && || ; |."""
    joined = re.sub(r"\\\n", " ", block)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        commands += [part.strip() for part in re.split(r"&&|\|\||;|\|", line) if part.strip()]
    return commands


def script_calls(command: str) -> list[tuple[str, list[str]]]:
    """(script path relative to the repo, flags given to it) for each kit script a command runs."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    calls = []
    for index, word in enumerate(words):
        match = SCRIPT_WORD.search(word)
        if match:
            flags = [w.split("=")[0] for w in words[index + 1:] if w.startswith("--")]
            calls.append((match.group(1), flags))
    return calls


@functools.lru_cache(maxsize=None)
def help_flags(script: str) -> frozenset[str]:
    """Every --flag the script's --help output mentions."""
    path = REPO_ROOT / script
    runner = [sys.executable] if path.suffix == ".py" else ["bash"]
    result = subprocess.run(runner + [str(path), "--help"], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    return frozenset(FLAG.findall(result.stdout + result.stderr))


def command_problems(markdown: str, source: str) -> list[str]:
    """Problems with the kit-script commands in a markdown text's bash blocks."""
    problems = []
    for block in fenced_blocks(markdown, "bash"):
        for command in shell_commands(block):
            for script, flags in script_calls(command):
                if not (REPO_ROOT / script).exists():
                    problems.append(f"{source}: names {script}, which does not exist")
                    continue
                known = help_flags(script)
                for flag in flags:
                    if flag not in known:
                        problems.append(f"{source}: {script} has no flag {flag} (its --help lists {sorted(known)})")
    return problems


# --- words: the site's readability limits ------------------------------------------------

FENCED_BLOCK = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)


def words(text: str) -> int:
    return len(text.split())


def prose_text(text: str) -> str:
    """What the reader reads as sentences: no fenced blocks, no inline code, no link targets."""
    text = FENCED_BLOCK.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def sections(body: str) -> list[tuple[str, str]]:
    """(heading, text) of every ``## `` section of a page body, subsections included."""
    parts = re.split(r"^(## .*)$", body, flags=re.MULTILINE)
    return [(parts[index], parts[index + 1]) for index in range(1, len(parts), 2)]


def prose_between_code_blocks(body: str) -> list[tuple[int, int]]:
    """(line where the stretch starts, prose words) of each stretch of the body between fenced blocks."""
    stretches, start = [], 0
    for match in FENCED_BLOCK.finditer(body):
        stretches.append((body.count("\n", 0, start) + 1, words(prose_text(body[start:match.start()]))))
        start = match.end()
    stretches.append((body.count("\n", 0, start) + 1, words(prose_text(body[start:]))))
    return stretches


def wording_problems(body: str) -> list[str]:
    """The site's word rules: 'Learning Path' capitalized, 'can' or 'might' instead of 'may'."""
    text = prose_text(body)
    problems = [f"write 'Learning Path', not {match!r}" for match in
                sorted(set(re.findall(r"\b[Ll]earning[- ][Pp]aths?\b", text))) if not re.fullmatch(r"Learning Paths?", match)]
    if re.search(r"\bmay\b", text, re.IGNORECASE):
        problems.append("write 'can' or 'might', not 'may'")
    return problems


def length_problems(body: str, max_section: int, max_stretch: int) -> list[str]:
    """Sections and stretches of prose without a code block that the site flags as too long."""
    problems = [f"section {heading!r} has {words(prose_text(text))} words (limit {max_section})"
                for heading, text in sections(body) if words(prose_text(text)) > max_section]
    problems += [f"{count} words without a code block from body line {line} (limit {max_stretch})"
                 for line, count in prose_between_code_blocks(body) if count > max_stretch]
    return problems


def only_noise_failed(result: subprocess.CompletedProcess, cwd: Path, command: str = "") -> bool:
    """True when a command stopped only because validate_results.py found the machine too noisy to
    quote the median: every FAIL row is `median_ci`. A page or kit run on a loaded CI machine may
    meet that honestly; every other check must still hold, so the tests accept exactly this case and
    nothing else. Two kinds of command get here: validate_results.py itself (the last thing it
    printed names validation.json), and a kit's silent verdict check, which reads validation.json of
    the run directory recorded in out/kits/<name>_run_dir.txt, or a report the kit saved as
    out/kits/<name>.json."""
    if result.returncode != 1:
        return False
    written = re.findall(r"wrote (\S+/validation\.json)", result.stdout)
    silent_verdict_check = not (result.stdout + result.stderr).strip()
    recorded = re.findall(r"out/kits/\w+_run_dir\.txt", command)
    saved = re.findall(r"out/kits/\w+\.json", command)
    if written and result.stdout.rstrip().endswith("validation.md"):
        report = cwd / written[-1]
    elif silent_verdict_check and recorded and "validation.json" in command:
        report = cwd / (cwd / recorded[-1]).read_text().strip() / "validation.json"
    elif silent_verdict_check and saved:
        report = cwd / saved[-1]
    else:
        return False
    checks = json.loads(report.read_text())["checks"]
    failed = [check for check in checks if check["status"] == "FAIL"]
    return bool(failed) and all(check["id"] == "median_ci" for check in failed)
