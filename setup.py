"""Ships tarot_eval_autoload.pth into site-packages, for wheels and editable installs.

lm-eval 0.4.13 has no plugin discovery, so a one-line .pth starts a cheap import
hook (tarot_eval/autoload.py) that registers `tarot-hf` and the tarot tasks only
when lm_eval itself is imported.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "tarot_eval_autoload.pth"
PTH_SOURCE = Path(__file__).parent / "tarot_eval" / PTH


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


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
