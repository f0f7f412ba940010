"""Reading a sweep file safely: any bytes, any size, give one line, never a traceback.

YAML aliases are refused (an alias bomb expands a few lines into gigabytes), duplicate keys are
an error (PyYAML keeps the last one silently), and the file must be UTF-8 text of at most 1 MB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SpecError

MAX_BYTES = 1_000_000  # a sweep file is a page of settings; more is a mistake or an attack


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases and without duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not supported in sweep files",
                                       problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: let PyYAML say so
                continue
            if duplicate:
                raise yaml.MarkedYAMLError(problem=f"key {key!r} appears twice", problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The parsed content of a sweep file; ``SpecError`` (one line naming the file) otherwise."""
    source = str(path)
    p = Path(path)
    try:
        if not p.exists():
            raise SpecError(source, "", "no such file")
        if not p.is_file():
            raise SpecError(source, "", "not a file")
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SpecError(source, "", f"{size:,} bytes; a sweep file is at most {MAX_BYTES:,} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise SpecError(source, "", f"cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if "\x00" in text:
        raise SpecError(source, "", "contains NUL bytes: not a text file")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise SpecError(source, where, f"not valid YAML ({problem})") from None
    except RecursionError:
        raise SpecError(source, "", "nested too deeply") from None
