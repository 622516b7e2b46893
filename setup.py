"""The build's one step beyond pyproject.toml: the wheel carries the default data files.

The policy, the GX expectations, the prompts, the field maps and the simulator's behaviour live at
the checkout's top level, where users edit them and the deployments find them; setuptools'
package-data cannot reach outside a package. So building the wheel copies them into the package as
`arflow/defaults/` (arflow/resources.py reads them from there when arflow is installed, and reads
the checkout's own files when run from a checkout). One copy in git, no symlinks; the sdist carries
the originals (MANIFEST.in). tests/test_packaging.py builds the wheel and checks what it holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# What arflow/resources.py's default_path() may name; the checkout's top-level files and folders.
DEFAULTS = ("policy.yaml", "salesforce_fields.yaml", "hubspot_fields.yaml", "simulation.yaml",
            "expectations", "prompts")


class build_py_with_defaults(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "arflow" / "defaults"
        if target.exists():
            shutil.rmtree(target)  # a file removed from the checkout leaves no stale copy
        target.mkdir(parents=True)
        for name in DEFAULTS:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": build_py_with_defaults})
