"""The experiment configs shipped inside the package, so that `mmrec run` works from any directory.

The files here are symbolic links to the repository's ``configs/*.yaml`` (one copy to edit; a wheel or sdist
stores their contents). ``resolve`` lets ``--config`` take a packaged name (``demo``, ``paper.yaml``) or the
repository spelling ``configs/demo.yaml`` from outside the repository.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def resolve(value: str) -> str:
    """A file that exists wins, so a local ``configs/demo.yaml`` (an edited copy, the repository's) is read as
    given; otherwise a bare name, or ``configs/NAME``, is the packaged config of that name. Anything else is
    returned unchanged and the loader reports it missing."""
    path = Path(value).expanduser()
    if path.is_file() or path.parent not in (Path("."), Path("configs")):
        return value
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    packaged = PACKAGED / name
    return str(packaged) if packaged.is_file() else value
