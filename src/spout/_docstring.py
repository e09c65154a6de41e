"""A docstring's summary and its parameters' texts, in Google, NumPy or Sphinx style."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

__all__ = ["parse_docstring"]

# Docstring sections. Google style: a "Heading:" line, entries indented under it.
_GOOGLE_PARAMETERS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "other parameters",
    "attributes",
}
_GOOGLE_HEADINGS = _GOOGLE_PARAMETERS | {
    "returns",
    "return",
    "yields",
    "yield",
    "raises",
    "examples",
    "example",
    "note",
    "notes",
    "warning",
    "warnings",
    "see also",
    "references",
    "todo",
}
# NumPy style: a heading underlined with dashes, entries at the heading's indentation.
_NUMPY_PARAMETERS = {"parameters", "other parameters", "attributes"}
_GOOGLE_ENTRY = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")
_NUMPY_ENTRY = re.compile(r"(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?")
_UNDERLINE = re.compile(r"\s*-{3,}\s*")
# Sphinx style: ":param name: text" or ":param type name: text" field lines.
_SPHINX_FIELD = re.compile(r":[a-zA-Z][^:]*:")
_SPHINX_PARAM = re.compile(r":param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)", re.DOTALL)


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """A docstring's summary (the text before its first section) and its parameters' texts."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    documented: dict[str, str] = {}
    summary_end: int | None = None
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        heading = stripped[:-1].strip().lower()
        if stripped.endswith(":") and heading in _GOOGLE_HEADINGS:
            end = _block_end(lines, i + 1, _indent(lines[i]))
            if heading in _GOOGLE_PARAMETERS:
                documented.update(_entries(lines[i + 1 : end], _google_entry))
        elif stripped and i + 1 < len(lines) and _UNDERLINE.fullmatch(lines[i + 1]):
            end = i + 2
            while end < len(lines) and not (
                lines[end].strip() and end + 1 < len(lines) and _UNDERLINE.fullmatch(lines[end + 1])
            ):
                end += 1
            if stripped.lower() in _NUMPY_PARAMETERS:
                documented.update(_entries(lines[i + 2 : end], _numpy_entry))
        elif _SPHINX_FIELD.match(stripped):
            end = _block_end(lines, i + 1, _indent(lines[i]))
            match = _SPHINX_PARAM.fullmatch(" ".join(line.strip() for line in lines[i:end]))
            if match and match.group(2).strip():
                documented[match.group(1)] = " ".join(match.group(2).split())
        else:
            i += 1
            continue
        if summary_end is None:
            summary_end = i
        i = end
    summary = "\n".join(lines[:summary_end]).strip()
    return summary, documented


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Where the block under a heading indented by ``indent`` ends: at the first line not deeper."""
    end = start
    while end < len(lines) and not (lines[end].strip() and _indent(lines[end]) <= indent):
        end += 1
    return end


def _google_entry(text: str) -> tuple[list[str], str] | None:
    match = _GOOGLE_ENTRY.fullmatch(text)
    return ([match.group(1)], match.group(2)) if match else None


def _numpy_entry(text: str) -> tuple[list[str], str] | None:
    match = _NUMPY_ENTRY.fullmatch(text)
    if not match:
        return None
    return [name.strip().lstrip("*") for name in match.group(1).split(",")], ""


def _entries(
    block: list[str], parse: Callable[[str], tuple[list[str], str] | None]
) -> dict[str, str]:
    """Entries of a parameters section: a head line each, then deeper continuation lines."""
    filled = [line for line in block if line.strip()]
    if not filled:
        return {}
    base = min(_indent(line) for line in filled)
    texts: dict[str, list[str]] = {}
    current: list[str] = []
    for line in filled:
        if _indent(line) <= base:
            parsed = parse(line.strip())
            current = parsed[0] if parsed else []
            for name in current:
                texts[name] = [parsed[1]] if parsed and parsed[1] else []
        else:
            for name in current:
                texts[name].append(line.strip())
    return {name: " ".join(" ".join(parts).split()) for name, parts in texts.items() if parts}
