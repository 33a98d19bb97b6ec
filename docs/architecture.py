"""Regenerate CONTRIBUTING.md's folder and module tables from the code: `python docs/architecture.py`
(`--check` exits 1 if stale).

One row per folder (its package docstring: the concern it holds), then one row per module of tarot_eval/, rl/ and tasks/
(their installed names, tarot_eval.rl and tarot_eval.tasks), ordered by the import-linter layers of pyproject.toml from the
bottom up: what the module holds (the first line of its docstring) and the tarot-eval modules it imports (read
with `ast`, so the column cannot drift from the imports).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
CONTRIBUTING = REPO / "CONTRIBUTING.md"
BEGIN, END = "<!-- modules: begin (python docs/architecture.py) -->", "<!-- modules: end -->"
SOURCES = {"tarot_eval": REPO / "tarot_eval", "tarot_eval.rl": REPO / "rl", "tarot_eval.tasks": REPO / "tasks"}
NAMESPACE = "tarot_eval"


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every non-empty module."""
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if path.stat().st_size == 0:
                continue
            found.setdefault(name, path)
    return found


def imports(path: Path, name: str, known: set[str]) -> list[str]:
    """The tarot-eval modules `path` imports (relative to the namespace), in the order first seen."""
    seen: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target not in (name, NAMESPACE) and not target.startswith(name + "."):
                short = target.removeprefix(NAMESPACE + ".")
                if short not in seen:
                    seen.append(short)
    return seen


def layer_of(name: str, layers: list[list[str]]) -> int:
    """Index of the pyproject layer holding `name` or its package (0 = bottom); past the top when in none."""
    for index, layer in enumerate(reversed(layers)):
        if any(name == member or name.startswith(member + ".") for member in layer):
            return index
    return len(layers)


def summary(path: Path) -> str:
    """The first sentence of the module's docstring (its first paragraph, cut at the first full stop)."""
    doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    paragraph = " ".join(doc.split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return (sentence + ".").replace("|", "\\|") if sentence else "—"


def table() -> str:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in contracts[0]["layers"]]
    found = modules()
    rows = sorted(found, key=lambda name: (layer_of(name, layers), name))
    lines = ["| layer | module | holds | imports (tarot-eval) |", "|---|---|---|---|"]
    for name in rows:
        layer = layer_of(name, layers)
        used = ", ".join(imports(found[name], name, set(found))) or "—"
        source = found[name].relative_to(REPO).as_posix()
        lines.append(f"| {layer if layer < len(layers) else '—'} | `{source}` | {summary(found[name])} | {used} |")
    return "\n".join(lines)


def concerns() -> str:
    """One row per folder of modules: where each concern lives (the first sentence of its package docstring)."""
    lines = ["| folder | concern |", "|---|---|"]
    for folder in SOURCES.values():
        for init in sorted(folder.rglob("__init__.py")):
            lines.append(f"| `{init.parent.relative_to(REPO).as_posix()}/` | {summary(init)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = CONTRIBUTING.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    fresh = text[:start] + "\n" + concerns() + "\n\n" + table() + "\n" + text[end:]
    if "--check" in argv:
        if fresh != text:
            print(f"{CONTRIBUTING}: the module table is stale; run python docs/architecture.py", file=sys.stderr)
            return 1
        return 0
    CONTRIBUTING.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
