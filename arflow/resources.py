"""Where the default data files are read from: the policy, the GX expectations, the prompts, the
field maps, the simulator's behaviour, the HTML templates.

- Run from a checkout (a clone, `pip install -e .`, or PYTHONPATH pointing at it): the checkout's own
  top-level files, `./policy.yaml`, `expectations/`, `prompts/`, `salesforce_fields.yaml`,
  `hubspot_fields.yaml`, `simulation.yaml`. Editing one there changes the next run, as it always did.
- Installed from the wheel: the same files as the build copied them into the package,
  `arflow/defaults/` (setup.py's build step), read through importlib.resources. They are the
  defaults, not for editing in site-packages: copy one out and point its variable at the copy.

Which one is decided by whether the package carries `arflow/defaults/` (only a built wheel does: the
checkout never has that folder). The variables that name a file win over both: ARFLOW_POLICY,
ARFLOW_SFDC_FIELD_MAP, ARFLOW_HUBSPOT_FIELD_MAP, `arflow simulate --behaviour`. The HTML templates
(`arflow/templates/`) are inside the package in either case.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# The folder the packages are imported from: the checkout, or site-packages for an installed wheel.
ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def _packaged() -> Path | None:
    """arflow/defaults/ of an installed wheel, or None in a checkout."""
    found = files("arflow") / "defaults"
    if not found.is_dir():
        return None
    if not isinstance(found, Path):  # a zip import: Jinja and GX need real folders
        raise RuntimeError("arflow's default files must be on the file system; install arflow unzipped")
    return found


PACKAGED = _packaged()
IN_CHECKOUT = PACKAGED is None


def default_path(name: str) -> Path:
    """The default file or folder NAME (e.g. "policy.yaml", "prompts"): the checkout's when run from
    a checkout, else the copy the wheel carries."""
    return (ROOT if PACKAGED is None else PACKAGED) / name


def default_data_dir() -> Path:
    """ARFLOW_DATA_DIR's default: the checkout's data/ folder; installed, ./data where arflow runs
    (never a folder inside site-packages)."""
    return ROOT / "data" if IN_CHECKOUT else Path.cwd() / "data"
