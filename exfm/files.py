"""Local files the platform writes beside the lake (pipeline records, experiment results, report
pages), always atomically: the content goes to a staging name in the same folder, then is renamed
onto the target, so a reader (DVC, a browser, the next stage) sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json(
    path: Path,
    data: Any,
    *,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = str,
) -> Path:
    """`data` as indented JSON (one space), atomically; `default` converts what JSON lacks."""
    return write_text(path, json.dumps(data, indent=1, sort_keys=sort_keys, default=default) + "\n")
