"""`make setup` installs what the notebooks need, at versions constraints.txt pins."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_the_dev_extra_brings_jupyter_and_constraints_pin_it():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert {"jupyterlab", "ipykernel", "ipywidgets", "nbclient"} <= {_name(r) for r in dev}
    pins = {_name(line): line.split("==")[1] for line in (REPO / "constraints.txt").read_text().split() if "==" in line}
    for name in (
        "jupyterlab",
        "ipykernel",
        "ipywidgets",
        "widgetsnbextension",
        "jupyterlab-widgets",
        "jupyter-server",
        "pandas",
    ):
        assert name in pins, f"{name} is not pinned in constraints.txt"
    assert (
        "make setup" in (REPO / "README.md").read_text()
        and "jupyter lab notebooks/" in (REPO / "README.md").read_text()
    )
