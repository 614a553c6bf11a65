"""Fill a new venv offline from the environment running this code.

For each requirement (and, transitively, what it requires) that is installed here in a satisfying version, copy the
distribution's files as its RECORD lists them, checking each against the RECORD's sha256, so the copy is exactly
what pip installed. Scripts outside site-packages are not copied (their shebangs name the old venv). Whatever is
absent here, or does not match its RECORD, is returned as `missing` for pip to fetch from the index.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution, distributions
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["SeedResult", "resolve", "seed_venv"]


@dataclass(frozen=True)
class SeedResult:
    copied: int
    """Distributions copied."""
    bytes: int
    """Bytes copied."""
    present: tuple[str, ...]
    """`name==version` already in the target venv."""
    missing: tuple[str, ...]
    """Requirements not satisfiable from here: pip must fetch them."""


def resolve(requirements: Iterable[str], without_deps: Iterable[str] = ()) -> tuple[list[Distribution], list[str]]:
    """The installed distributions that satisfy `requirements` and their dependencies (markers and extras
    honoured), and the requirement strings nothing installed here satisfies. The dependencies of the packages named
    in `without_deps` (model packages installed with --no-deps) are not followed."""
    skip = {canonicalize_name(n) for n in without_deps}
    queue = [Requirement(r) for r in requirements]
    chosen: dict[str, tuple[Distribution, frozenset[str]]] = {}
    missing: list[str] = []
    while queue:
        req = queue.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            missing.append(str(req))
            continue
        extras = frozenset(req.extras)
        if name in chosen and extras <= chosen[name][1]:
            continue
        extras |= chosen[name][1] if name in chosen else frozenset()
        chosen[name] = (dist, extras)
        for raw in [] if name in skip else dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {"", *extras}):
                sub.marker = None  # evaluated here, with the parent's extras
                queue.append(sub)
    return [d for d, _ in chosen.values()], sorted(set(missing))


def _site_packages(venv: Path) -> Path | None:
    """The venv's site-packages if its Python has our major.minor (compiled extensions must match)."""
    site = venv / f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    return site if site.is_dir() else None


def _copy_dist(dist: Distribution, site: Path) -> int | None:
    """Copy one distribution's files; the number of bytes, or None (nothing left behind) if a file is missing or
    differs from its RECORD."""
    base = Path(str(dist.locate_file("")))
    done: list[Path] = []
    total = 0
    for f in dist.files or []:
        rel = PurePosixPath(str(f))
        if rel.is_absolute() or ".." in rel.parts:
            continue  # console scripts and data outside site-packages
        src, dst = base / rel, site / rel
        if not src.is_file():
            if f.hash is None:
                continue  # unhashed entries (RECORD itself, byte code) may be absent
            break
        dst.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.new(f.hash.mode) if f.hash else None
        with open(src, "rb") as a, open(dst, "wb") as b:
            while chunk := a.read(1 << 20):
                b.write(chunk)
                if digest:
                    digest.update(chunk)
        done.append(dst)
        shutil.copymode(src, dst)
        total += dst.stat().st_size
        if digest and f.hash and base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != f.hash.value:
            break
    else:
        return total
    for path in done:
        path.unlink(missing_ok=True)
    return None


def seed_venv(venv: Path, requirements: Iterable[str], progress: Callable[[str], None] = lambda _: None,
              without_deps: Iterable[str] = ()) -> SeedResult:
    reqs = list(requirements)
    site = _site_packages(venv)
    if site is None:
        progress(f"{venv} has no Python {sys.version_info[0]}.{sys.version_info[1]} site-packages: nothing copied")
        return SeedResult(0, 0, (), tuple(sorted(reqs)))
    have = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions(path=[str(site)])}
    dists, missing = resolve(reqs, without_deps)
    copied, nbytes, present = 0, 0, []
    for i, dist in enumerate(sorted(dists, key=lambda d: canonicalize_name(d.metadata["Name"])), 1):
        name = canonicalize_name(dist.metadata["Name"])
        if have.get(name) == dist.version:
            present.append(f"{name}=={dist.version}")
            continue
        size = _copy_dist(dist, site)
        if size is None:
            progress(f"{name} {dist.version}: files missing or changed since install; pip will fetch it")
            missing.append(f"{name}=={dist.version}")
            continue
        copied, nbytes = copied + 1, nbytes + size
        if size > 20_000_000 or i % 20 == 0 or i == len(dists):
            progress(f"[{i}/{len(dists)}] {name} {dist.version} ({nbytes / 1e6:.0f} MB so far)")
    return SeedResult(copied, nbytes, tuple(present), tuple(sorted(set(missing))))
