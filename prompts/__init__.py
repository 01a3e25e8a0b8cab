"""Prompt templates: text files with declared variables, and the few lines that load and render them.

A template file starts with a header of `#` lines, the first of which declares its variables:

    # variables: history, candidates
    # (further comment lines are ignored)
    Text with {{history}} and {{candidates}} placeholders.

Loading checks that the placeholders in the body are exactly the declared variables; rendering with a
missing or undeclared variable raises `ConfigError`. Untrusted text (titles, reviews, chat messages)
goes through `quote` / `data_block`: JSON-escaped, with `<` and `>` escaped, inside a delimited
<data> block, so it can neither close the block nor read as an instruction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from retrieval.errors import ConfigError

PROMPT_DIR = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_HEADER = re.compile(r"^#\s*variables\s*:\s*(.*)$")


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template.

    Attributes:
        name: file stem, e.g. "rerank".
        variables: declared variable names.
        body: template text after the header.
    """

    name: str
    variables: frozenset[str]
    body: str

    def render(self, **values: object) -> str:
        """The body with every `{{var}}` replaced by `str(values[var])`.

        Raises:
            ConfigError: a declared variable is missing or an undeclared one is given.
        """
        missing = self.variables - values.keys()
        if missing:
            raise ConfigError(f"prompt {self.name!r}: missing variable(s) {', '.join(sorted(missing))}")
        extra = values.keys() - self.variables
        if extra:
            raise ConfigError(f"prompt {self.name!r}: undeclared variable(s) {', '.join(sorted(extra))}")
        # One pass over the body: a value containing "{{x}}" is never expanded again.
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.body)


def parse_template(name: str, text: str) -> PromptTemplate:
    """Parse template text (header + body); raises ConfigError when header and placeholders disagree."""
    lines = text.splitlines(keepends=True)
    if not lines or not (match := _HEADER.match(lines[0].strip())):
        raise ConfigError(f"prompt {name!r}: first line must be '# variables: a, b, ...'")
    declared = frozenset(v.strip() for v in match.group(1).split(",") if v.strip())
    start = 1
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    body = "".join(lines[start:]).strip("\n") + "\n"
    used = frozenset(_PLACEHOLDER.findall(body))
    if used != declared:
        raise ConfigError(f"prompt {name!r}: declared {sorted(declared)} but the body uses {sorted(used)}")
    return PromptTemplate(name, declared, body)


@cache
def load_prompt(name: str, directory: Path | None = None) -> PromptTemplate:
    """Load `prompts/<name>.txt` (or from `directory`); unknown names raise ConfigError listing valid ones."""
    folder = directory or PROMPT_DIR
    path = folder / f"{name}.txt"
    if not path.is_file():
        valid = ", ".join(sorted(p.stem for p in folder.glob("*.txt")))
        raise ConfigError(f"unknown prompt {name!r}; valid: {valid}")
    return parse_template(name, path.read_text(encoding="utf-8"))


def render(name: str, **values: object) -> str:
    """Load and render a template in one call."""
    return load_prompt(name).render(**values)


def quote(text: str, max_chars: int | None = None) -> str:
    """Untrusted text as a JSON string literal with `<`/`>` escaped (cannot close a <data> block).

    Args:
        text: any text from users, items or reviews.
        max_chars: truncate to this many characters first (an ellipsis marks the cut).
    """
    if max_chars is not None and len(text) > max_chars:
        text = text[: max(0, max_chars - 1)].rstrip() + "…"
    return json.dumps(text, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def data_block(label: str, lines: Iterable[str]) -> str:
    """Lines (already built from `quote`d values) inside a delimited block the instructions point at."""
    if not re.fullmatch(r"[a-z_]+", label):
        raise ConfigError(f"data block label must be lowercase letters or '_': {label!r}")
    body = "\n".join(lines)
    return f'<data name="{label}">\n{body}\n</data>'
