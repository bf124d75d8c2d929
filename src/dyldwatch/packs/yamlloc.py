"""YAML loading that remembers where every value came from.

Lint errors and SITE errors must say FILE:LINE, so documents are composed (node tree with marks)
and constructed side by side; `Located.line(path)` answers the line of any key or item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Key = tuple[str | int, ...]


class YamlError(ValueError):
    """A document that is not YAML, with the file and line of the problem."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass(slots=True)
class Located:
    """The constructed document plus 1-based lines of each key path (and of block-scalar bodies)."""

    file: str
    data: Any
    lines: dict[Key, int] = field(default_factory=dict)
    body_lines: dict[Key, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest located ancestor (1 for the document)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return 1

    def body_line(self, path: Sequence[str | int]) -> int:
        """First line of a scalar's text (the line after `|` for block scalars)."""
        return self.body_lines.get(tuple(path), self.line(path))


def _walk(node: yaml.Node, key: Key, out: Located) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else str(k.start_mark.line)
            path = (*key, name)
            out.lines[path] = k.start_mark.line + 1
            _walk(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*key, i)
            out.lines[path] = item.start_mark.line + 1
            _walk(item, path, out)
    elif isinstance(node, yaml.ScalarNode):
        block = node.style in ("|", ">")
        out.body_lines[key] = node.start_mark.line + (2 if block else 1)


def load_located(path: str | Path, text: str | None = None) -> Located:
    """Parse one YAML document from `path` (or `text`), raising YamlError with FILE:LINE."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise YamlError(name, 1, f"cannot read: {exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(name, (mark.line + 1) if mark else 1, f"YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise YamlError(name, 1, f"YAML: {exc}") from exc
    finally:
        loader.dispose()
    out = Located(name, data)
    if node is not None:
        _walk(node, (), out)
    return out
