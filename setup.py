"""Package discovery under the tarot_eval namespace, and tarot_eval_autoload.pth in wheels and editable installs.

Packages: `tarot_eval` and every subpackage found under it, plus every package found in each folder that
`[tool.setuptools.package-dir]` (pyproject.toml) maps into the namespace (`rl/` -> `tarot_eval.rl`,
`tasks/` -> `tarot_eval.tasks`), so a new subpackage ships without editing a list.

lm-eval 0.4.13 has no plugin discovery, so a one-line .pth starts a cheap import
hook (tarot_eval/harness/autoload.py) that registers `tarot-hf` and the tarot tasks only
when lm_eval itself is imported.
"""

import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
NAMESPACE = "tarot_eval"
PTH = "tarot_eval_autoload.pth"
PTH_SOURCE = ROOT / NAMESPACE / PTH


def package_dir(root: Path = ROOT) -> dict[str, str]:
    """`[tool.setuptools.package-dir]` of pyproject.toml: package name -> folder."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return config.get("tool", {}).get("setuptools", {}).get("package-dir", {})


def discover_packages(root: Path, mapping: dict[str, str]) -> list[str]:
    """Every package of the namespace: those under `root/tarot_eval` and those under each mapped folder."""
    packages = find_packages(str(root), include=[NAMESPACE, f"{NAMESPACE}.*"])
    for name, folder in mapping.items():
        packages += [name, *(f"{name}.{sub}" for sub in find_packages(str(root / folder)))]
    return sorted(packages)


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(PTH_SOURCE), str(Path(self.build_lib) / PTH))


class _StrategyWithPth:
    """Wraps setuptools' editable strategy so the editable wheel carries the .pth too."""

    def __init__(self, strategy):
        self._strategy = strategy

    def __call__(self, wheel, files, mapping):
        self._strategy(wheel, files, mapping)
        wheel.writestr(PTH, PTH_SOURCE.read_text())

    def __enter__(self):
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self._strategy.__exit__(*exc)


class EditableWheelWithPth(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


if __name__ == "__main__":  # setuptools runs this file as a script; tests import discover_packages
    setup(
        packages=discover_packages(ROOT, package_dir()),
        cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth},
    )
