"""Reading the JSON files tarot-eval writes (checkpoint configs, calibrations, records): one-line errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path, error: type[Exception], hint: str = ""):
    """The JSON value in `path`; text that is not UTF-8 or not JSON raises `error` naming the file (and `hint`)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start}: {problem.reason}){hint}") from None
    except json.JSONDecodeError as problem:
        raise error(f"{path}: corrupt JSON ({problem}){hint}") from None
