"""`make install`: the package in a venv, the config, the systemd units and the service users, on a Debian-like system.

    python -m voice_agent.install [--destdir DIR] [--prefix /opt/voice-agent] [--no-venv] [--python /usr/bin/python3]

With `--destdir` everything goes under DIR (a staging or scratch root) and nothing on the running system is touched:
no systemctl, no user creation. Without it, it installs for real (root only) and creates the service users with
systemd-sysusers. It never runs systemctl; it prints the commands to run next.

The venv is filled offline when possible: every dependency (and model package) already installed in the Python
running this installer is copied file by file from its RECORD, each file checked against the RECORD's sha256; only
what is missing there comes from the package index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import default_text, parse_config
from .errors import VoiceAgentError
from .venv_seed import SeedResult, seed_venv

PROJECT = Path(__file__).resolve().parents[1]
UNITS = ("voice-agent.service", "vllm.service")
SYSUSERS = ("voice-agent", "vllm")
DEFAULT_PREFIX = "/opt/voice-agent"
_SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "voice_agent")


class InstallError(VoiceAgentError):
    code = "install-failed"


@dataclass(frozen=True)
class Layout:
    """Where things go. `root` is DESTDIR (or /); every other path is as seen on the installed system."""

    root: Path
    prefix: Path = Path(DEFAULT_PREFIX)
    etc: Path = Path("/etc/voice-agent")
    unit_dir: Path = Path("/etc/systemd/system")
    sysusers_dir: Path = Path("/etc/sysusers.d")

    @property
    def staged(self) -> bool:
        return self.root != Path("/")

    def at(self, path: Path) -> Path:
        """`path` inside the root we write to."""
        return self.root / path.relative_to("/")

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"


@dataclass(frozen=True)
class Action:
    path: str
    what: str
    """created | updated | unchanged | kept (existing file left alone) | ran"""


@dataclass
class Report:
    actions: list[Action] = field(default_factory=list)

    def add(self, path: Path | str, what: str) -> None:
        self.actions.append(Action(str(path), what))
        say(f"   {what:<9} {path}")


def say(line: str) -> None:
    print(line, flush=True)


# -- files ------------------------------------------------------------------------------------------------------


def _write(target: Path, shown: Path, text: str, mode: int, report: Report) -> None:
    """Write atomically (temp file + rename) unless the content is already there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        os.chmod(target, mode)
        report.add(shown, "unchanged")
        return
    existed = target.exists()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.add(shown, "updated" if existed else "created")


def install_config(layout: Layout, report: Report) -> None:
    """/etc/voice-agent/config.toml from the embedded default, mode 0600, never overwriting an existing one."""
    text = default_text()
    parse_config(text, "<embedded default>")  # never install a config the appliance would refuse
    shown = layout.etc / "config.toml"
    target = layout.at(shown)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        report.add(shown, "kept")
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(target, 0o600)  # whatever the umask
        report.add(shown, "created")
    example = layout.etc / "vllm.env.example"
    _write(layout.at(example), example, _source("systemd/vllm.env.example"), 0o644, report)


def install_units(layout: Layout, report: Report) -> None:
    for name in UNITS:
        text = _source(f"systemd/{name}")
        if layout.prefix != Path(DEFAULT_PREFIX):
            text = text.replace(DEFAULT_PREFIX + "/", f"{layout.prefix}/")
        shown = layout.unit_dir / name
        _write(layout.at(shown), shown, text, 0o644, report)
    for name in SYSUSERS:
        shown = layout.sysusers_dir / f"{name}.conf"
        _write(layout.at(shown), shown, _source(f"systemd/{name}.sysusers"), 0o644, report)


def install_docs(layout: Layout, report: Report) -> None:
    docs = layout.prefix / "share/doc/voice-agent"
    for rel in ("README.md", *sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "hardware").rglob("*")
                                     if p.is_file())):
        src = PROJECT / rel
        if src.is_file():
            _write(layout.at(docs / rel), docs / rel, src.read_text(encoding="utf-8"), 0o644, report)


def _source(rel: str) -> str:
    path = PROJECT / rel
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"{path}: cannot read ({exc.strerror}); run the installer from the source tree",
                           code="install-source-missing") from exc


# -- the venv ---------------------------------------------------------------------------------------------------


def default_python() -> str:
    """The interpreter the service venv is based on: Debian's python3 when it matches ours (it must stay reachable
    under ProtectHome=yes, which a pyenv in /root is not), else the base of the running one."""
    system = Path("/usr/bin/python3")
    if system.exists():
        out = subprocess.run([str(system), "-c", "import sys; print(sys.version_info[:2])"],
                             check=False, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == str(tuple(sys.version_info[:2])):
            return str(system)
    return getattr(sys, "_base_executable", sys.executable)


def _run(cmd: list[str], what: str) -> None:
    start = time.monotonic()
    say(f"==> {what}")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InstallError(f"{what} failed ({' '.join(cmd)}):\n{tail}", code="install-command-failed")
    say(f"    done in {time.monotonic() - start:.1f} s")


def _requirements() -> tuple[list[str], list[str], set[str]]:
    """(project dependencies, model packages, model packages installed without their declared dependencies) from
    pyproject.toml and models/manifest.toml."""
    deps = tomllib.loads(_source("pyproject.toml"))["project"].get("dependencies", [])
    models: list[str] = []
    no_deps: set[str] = set()
    manifest = PROJECT / "models/manifest.toml"
    if manifest.is_file():
        for model in tomllib.loads(manifest.read_text(encoding="utf-8")).get("models", {}).values():
            pkgs = [model, *model.get("parts", [])]
            # default models always; optional ones when this environment has them (`voice-agent models install`)
            if model.get("default", False) or all(_installed(p["package"]) for p in pkgs):
                models += [f"{p['package']}=={p['version']}" for p in pkgs]
                no_deps |= {p["package"] for p in pkgs if p.get("no_deps", False)}
    return deps, models, no_deps


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def install_venv(layout: Layout, python: str, report: Report) -> SeedResult:
    venv = layout.at(layout.venv)
    vpy = venv / "bin/python"
    if not vpy.exists():
        _run([python, "-m", "venv", str(venv)], f"creating the venv {layout.venv} (base {python})")
        report.add(layout.venv, "created")
    deps, models, no_deps = _requirements()
    say("==> copying dependencies and models from the current environment (offline)")
    seed = seed_venv(venv, deps + models, progress=lambda line: say(f"    {line}"), without_deps=no_deps)
    say(f"    copied {seed.copied} distributions ({seed.bytes / 1e6:.0f} MB), {len(seed.present)} already there; "
        f"missing here: {', '.join(seed.missing) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="voice-agent-src-") as tmp:
        src = Path(tmp) / "src"
        _copy_source(src)
        # Build isolation honours pyproject's build-system (setuptools>=68): that one small package comes from
        # the index or pip's cache; every runtime dependency and model is already in the venv.
        pip = [str(vpy), "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location"]
        if seed.missing:
            _run(pip + [str(src), *seed.missing], "installing voice-agent and the missing packages (index)")
        else:
            _run(pip + ["--no-deps", str(src)], "installing voice-agent into the venv")
    _pip_check(vpy, no_deps)
    report.add(layout.venv / "bin/voice-agent", "updated")
    if layout.staged:
        _unstage(venv, layout.venv)
    return seed


def _pip_check(vpy: Path, no_deps: set[str]) -> None:
    """`pip check`, except for what model packages installed without their dependencies declare (e.g. a tokenizer
    package that names PyTorch, which the appliance never loads)."""
    from packaging.utils import canonicalize_name

    start = time.monotonic()
    say("==> checking the venv's dependencies")
    proc = subprocess.run([str(vpy), "-m", "pip", "check", "--disable-pip-version-check"], check=False,
                          capture_output=True, text=True)
    skip = {canonicalize_name(n) for n in no_deps}
    problems = [line for line in proc.stdout.splitlines()
                if line.strip() and "no broken requirements" not in line.lower()
                and canonicalize_name(line.split()[0]) not in skip]
    if problems or (proc.returncode != 0 and not proc.stdout.strip()):
        raise InstallError("checking the venv's dependencies failed:\n" + "\n".join(problems or [proc.stderr]),
                           code="install-command-failed")
    say(f"    done in {time.monotonic() - start:.1f} s")


def _copy_source(dest: Path) -> None:
    """Build from a copy so the work tree gets no build/ or *.egg-info."""
    dest.mkdir(parents=True)
    for part in _SOURCE_PARTS:
        src = PROJECT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, dest / part)
    if not (dest / "README.md").exists():  # pyproject's `readme` must exist to build
        (dest / "README.md").write_text("voice-agent\n")


def _unstage(staged: Path, final: Path) -> None:
    """Scripts and pyvenv.cfg name the venv by its staging path; point them at the installed path."""
    old, new = str(staged).encode(), str(final).encode()
    for path in [staged / "pyvenv.cfg", *(p for p in (staged / "bin").iterdir() if p.is_file() and not p.is_symlink())]:
        data = path.read_bytes()
        if old in data and b"\0" not in data[:1024]:
            path.write_bytes(data.replace(old, new))


# -- main -------------------------------------------------------------------------------------------------------


def install(destdir: str, prefix: str = DEFAULT_PREFIX, *, venv: bool = True, python: str | None = None) -> Report:
    if not Path(prefix).is_absolute():
        raise InstallError(f"--prefix must be an absolute path, got {prefix!r}", code="install-bad-prefix")
    layout = Layout(root=Path(destdir).resolve() if destdir else Path("/"), prefix=Path(prefix))
    if not layout.staged and os.geteuid() != 0:
        raise InstallError("installing into / needs root", code="install-not-root",
                           fix="sudo make install, or stage it with make install DESTDIR=/some/dir")
    if not Path("/etc/debian_version").exists():
        say("warning: this does not look like a Debian-like system; continuing")
    report = Report()
    say(f"==> installing voice-agent into {layout.root} (prefix {layout.prefix})")
    if venv:
        install_venv(layout, python or default_python(), report)
    say("==> configuration, units and service users")
    install_config(layout, report)
    install_units(layout, report)
    install_docs(layout, report)
    if not layout.staged and shutil.which("systemd-sysusers"):
        files = [str(layout.sysusers_dir / f"{n}.conf") for n in SYSUSERS]
        _run(["systemd-sysusers", *files], "creating the service users (systemd-sysusers)")
        report.add("users voice-agent, vllm", "ran")
    _next_steps(layout, venv)
    return report


def _next_steps(layout: Layout, venv: bool) -> None:
    say("\nNext steps:")
    if layout.staged:
        say(f"  (staged under {layout.root}: nothing on this system was changed; copy the tree to / on the target)")
        say("  systemd-sysusers   # creates the voice-agent and vllm users")
    if not venv:
        say(f"  (--no-venv: install the package into {layout.venv} yourself)")
    say(f"  edit {layout.etc}/config.toml   # room, MQTT broker, LLM, devices")
    say(f"  {layout.venv}/bin/voice-agent doctor --config {layout.etc}/config.toml")
    say("  systemctl daemon-reload")
    say("  systemctl enable --now voice-agent")
    say(f"  on a GPU box: cp {layout.etc}/vllm.env.example {layout.etc}/vllm.env, edit it, "
        "systemctl enable --now vllm")
    say("  journalctl -u voice-agent -f   # follow the log")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m voice_agent.install", description=__doc__.split("\n\n")[0])
    ap.add_argument("--destdir", default=os.environ.get("DESTDIR", ""),
                    help="stage under this root instead of / (nothing on the running system is touched)")
    ap.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"install prefix (default {DEFAULT_PREFIX})")
    ap.add_argument("--no-venv", action="store_true", help="config, units and users only: no venv")
    ap.add_argument("--python", default=None, help="base interpreter for the venv (default: /usr/bin/python3)")
    args = ap.parse_args(argv)
    try:
        install(args.destdir, args.prefix, venv=not args.no_venv, python=args.python)
    except VoiceAgentError as exc:
        print(f"error: {exc} [{exc.code}]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
