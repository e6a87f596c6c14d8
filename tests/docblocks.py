"""The fenced blocks of README.md and docs/*.md, with the markers docs/README.md describes.

A block's markers are the HTML comments on the lines right above its opening fence (no blank line
between): ``<!-- runnable -->``, ``<!-- runnable: serves, env conductor.env -->``,
``<!-- not-runnable: why -->``, ``<!-- output -->``, and the pages' own ``<!-- deploy: NAME -->`` and
``<!-- install: FILE -->``. Used by tests/unit/test_docs.py (every shell block is marked) and
tests/acceptance/test_doc_commands.py (the runnable ones run).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = ("sh", "bash", "shell", "console", "zsh")
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
ELLIPSIS = "..."


def pages() -> list[Path]:
    """README.md and every page under docs/, in a stable order."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def page_name(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    markers: list[str] = field(default_factory=list)
    output: "Block | None" = None  # the <!-- output --> block that shows what this one prints

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES

    def marker(self, name: str) -> str | None:
        """The text after ``name:`` of the marker ``name`` ("" for a bare ``<!-- name -->``), or None."""
        for marker in self.markers:
            key, _, value = marker.partition(":")
            if key.strip() == name:
                return value.strip()
        return None

    @property
    def runnable(self) -> bool:
        return self.marker("runnable") is not None

    @property
    def options(self) -> dict[str, str]:
        """``serves`` and ``env FILE`` of a ``<!-- runnable: ... -->`` marker."""
        found = {}
        for option in filter(None, (o.strip() for o in (self.marker("runnable") or "").split(","))):
            name, _, value = option.partition(" ")
            found[name] = value.strip()
        return found


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, each runnable one with its output block attached."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        language = lines[i][3:].strip()
        markers = []
        j = i - 1
        while j >= 0 and (match := MARKER.match(lines[j].strip())):
            markers.insert(0, match.group(1))
            j -= 1
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        block = Block(page_name(path), i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", markers)
        if block.marker("output") is not None:
            shell = [b for b in found if b.is_shell]
            if not shell or not shell[-1].runnable or shell[-1].output is not None:
                raise ValueError(f"{block.where}: an output block must follow a runnable shell block")
            shell[-1].output = block
        found.append(block)
        i = end + 1
    return found


def marked_file(path: Path, name: str) -> str:
    """The text of the block a page marks ``<!-- deploy: NAME -->`` (an environment file, say)."""
    for block in blocks(path):
        if block.marker("deploy") == name:
            return block.text
    raise LookupError(f"{page_name(path)} has no block marked <!-- deploy: {name} -->")


def line_matches(expected: str, actual: str) -> bool:
    """``...`` in an expected line stands for any text (none included)."""
    pattern = ".*".join(re.escape(part) for part in expected.rstrip().split(ELLIPSIS))
    return re.fullmatch(pattern, actual.rstrip()) is not None


def output_matches(expected: str, actual: str) -> bool:
    """Line by line, every line."""
    want, got = expected.splitlines(), actual.splitlines()
    return len(want) == len(got) and all(line_matches(w, g) for w, g in zip(want, got, strict=True))


def exec_last(script: str) -> str:
    """A ``serves`` block's script with its last command under ``exec``, so a signal reaches the server."""
    lines = script.rstrip().splitlines()
    lines[-1] = "exec " + lines[-1]
    return "\n".join(lines) + "\n"


def output_contains(expected: str, actual: str) -> bool:
    """Each expected line in order, other lines allowed between (what a server prints as it starts)."""
    got = iter(actual.splitlines())
    return all(any(line_matches(w, g) for g in got) for w in expected.splitlines())
