"""What each tokenlean package pulls in when installed alone, with no extras.

For every workspace member: build its wheel (and the wheels of the members it
depends on), install it into a new, empty venv with the versions of
requirements/lock.txt as constraints, and count what arrived: distributions
other than the package itself and the venv's own pip, and the size of
site-packages. Prints JSON, and a markdown table with --markdown.

    .venv/bin/python scripts/footprint.py [--markdown] [PACKAGE ...]

(`make footprint`). Needs the package index the lock was resolved from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
NOT_COUNTED = {"pip", "setuptools", "wheel"}


def _members() -> dict[str, Path]:
    folders = [ROOT / "pyproject.toml",  # the `tokenlean` meta-package: core + cli
               *sorted((ROOT / "packages").glob("*/pyproject.toml")),
               *sorted((ROOT / "integrations").glob("*/pyproject.toml"))]
    return {tomllib.loads(p.read_text())["project"]["name"]: p.parent for p in folders}


def _pip(python: Path, *args: str) -> str:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip {' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def measure(name: str, wheels: Path, scratch: Path) -> dict[str, object]:
    env = scratch / name
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    empty = _size(site)
    _pip(python, "install", "-q", "--find-links", str(wheels), "-c", str(LOCK), name)
    listed = json.loads(_pip(python, "list", "--format", "json"))
    pulled = sorted(d["name"] for d in listed
                    if d["name"].lower() not in NOT_COUNTED and d["name"] != name)
    size_mb = round((_size(site) - empty) / 1e6, 1)
    return {"package": name, "pulls_in": len(pulled), "size_mb": size_mb, "distributions": pulled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", help="distribution names (default: all members)")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = parser.parse_args()
    members = _members()
    names = args.packages or list(members)
    unknown = set(names) - set(members)
    if unknown:
        raise SystemExit(f"not a workspace member: {sorted(unknown)}; members: {sorted(members)}")
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        _pip(Path(sys.executable), "wheel", "-q", "--no-deps", "-w", str(wheels),
             *(str(folder) for folder in members.values()))
        rows = [measure(name, wheels, Path(tmp)) for name in names]
    print(json.dumps({"constraints": str(LOCK.relative_to(ROOT)), "packages": rows}, indent=2))
    if args.markdown:
        print("\n| package (no extras) | distributions pulled in | size on disk |")
        print("|---|---:|---:|")
        for row in rows:
            print(f"| `{row['package']}` | {row['pulls_in']} | {row['size_mb']} MB |")


if __name__ == "__main__":
    main()
