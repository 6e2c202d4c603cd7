"""One build step on top of pyproject.toml: the wheel carries the repository's data/ (the demo) and the .ipynb files of
notebooks/ inside the package, as lorakit/data and lorakit/notebooks (lorakit.shipped finds them there, or beside
the package in a checkout). Everything else about the build lives in pyproject.toml.

    python -m build                                     # dist/lorakit-*.whl and dist/lorakit-*.tar.gz
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"data": "**/*", "notebooks": "*.ipynb"}  # repository folder -> the files of it that ship
SKIP = {"__pycache__", ".ipynb_checkpoints", ".DS_Store",
        "toy-base-2"}  # the second toy world's base: for bench/ and the tests of a checkout, not for users


class build_py_with_shipped(build_py):  # noqa: N801 - setuptools' command naming
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them where they are
        for folder, pattern in SHIPPED.items():
            for src in sorted((ROOT / folder).glob(pattern)):
                if src.is_file() and not SKIP & set(src.relative_to(ROOT).parts):
                    dest = Path(self.build_lib) / "lorakit" / src.relative_to(ROOT)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)


setup(cmdclass={"build_py": build_py_with_shipped})
