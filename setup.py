"""Build step: the wheel carries packs/ and sample_dbs/scenarios/ as package data without moving them.

The sources stay where people edit them (packs/*.yaml, sample_dbs/scenarios/*.yaml); build_py copies
them into `dyldwatch/data/packs` and `dyldwatch/data/scenarios` inside the build tree, where
`dyldwatch.resources` finds them in an installed wheel. Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: (source folder in the checkout, destination inside the package, file patterns)
SHIPPED = (
    ("packs", "dyldwatch/data/packs", ("*.yaml",)),
    ("sample_dbs/scenarios", "dyldwatch/data/scenarios", ("*.yaml", "README.md")),
)


class BuildPyWithShippedData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself (resources.py)
            return
        for src, dest, patterns in SHIPPED:
            out = Path(self.build_lib) / dest
            out.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for f in sorted((HERE / src).glob(pattern)):
                    shutil.copy2(f, out / f.name)


setup(cmdclass={"build_py": BuildPyWithShippedData})
