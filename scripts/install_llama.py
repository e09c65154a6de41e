"""Install llama-cpp-python built portably for this CPU family, never natively for this one CPU.

Why: a source build of llama.cpp defaults to GGML_NATIVE, which compiles for every instruction
the build machine has. On Sapphire Rapids class Xeons that includes AMX, and the first decode
then segfaults in ggml's AMX matmul (ggml-org/llama.cpp#20824). A native wheel also crashes on
any other CPU it is copied to. So spout builds with GGML_NATIVE=OFF and names the instruction
sets itself: AVX, AVX2, FMA and F16C where the CPU has them all (every x86-64 CPU since 2013),
the plain x86-64 baseline otherwise.

pip caches the wheel it builds from an sdist under the sdist's name, not under the CMAKE_ARGS
it was built with, so a machine that once built a native wheel would get it back on every
install. This script therefore builds with pip's cache off, and keeps the wheel in a cache of
its own keyed by the version, the flags and the Python tag
(``$SPOUT_WHEEL_CACHE``, else ``$XDG_CACHE_HOME/spout/wheels``, else ``~/.cache/spout/wheels``):
the second install on a machine takes seconds.

Usage (with the interpreter of the venv to install into)::

    python scripts/install_llama.py             # the version pinned in pyproject.toml
    python scripts/install_llama.py --print-flags
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llama-cpp-python"
#: Where this venv records which build it holds (read by spout's local provider too).
MARKER = Path(sys.prefix) / "share" / "spout" / "llama-cpp-build.json"
#: Instruction sets the portable x86-64 build uses, all present on every CPU since Haswell.
X86_PORTABLE = ("avx", "avx2", "fma", "f16c")


def pinned_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python(?:\[[^\]]*\])?==([0-9][^"]*)"', text)
    if match is None:
        raise SystemExit("install_llama: no llama-cpp-python==X pin in pyproject.toml")
    return match.group(1)


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (Linux: /proc/cpuinfo), empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_flags(machine: str, flags: set[str]) -> tuple[list[str], str | None]:
    """The CMake options for this CPU family, and a note for the user where it lacks AVX2."""
    args = ["-DGGML_NATIVE=OFF"]
    if machine not in ("x86_64", "amd64"):
        # GGML_NATIVE=OFF alone gives the architecture's baseline (armv8 on aarch64).
        return args, None
    if all(f in flags for f in X86_PORTABLE):
        return args + [f"-DGGML_{f.upper()}=ON" for f in X86_PORTABLE], None
    missing = ", ".join(f.upper() for f in X86_PORTABLE if f not in flags)
    note = (
        f"this CPU has no {missing}: llama.cpp is built for the plain x86-64 baseline. "
        "The bundled model runs, several times more slowly than on a CPU with AVX2."
    )
    off = [f"-DGGML_{f.upper()}=OFF" for f in X86_PORTABLE]
    return args + off, note


def cache_dir() -> Path:
    if os.environ.get("SPOUT_WHEEL_CACHE"):
        return Path(os.environ["SPOUT_WHEEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spout" / "wheels"


def build_key(version: str, args: list[str]) -> str:
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    digest = hashlib.sha256(" ".join([version, tag, *args]).encode()).hexdigest()[:16]
    return f"{PACKAGE}-{version}-{digest}"


def installed_marker() -> dict[str, str] | None:
    try:
        data = json.loads(MARKER.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def installed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


#: ninja's "[12/80] Building C object ..." and make's "[ 45%] Building ..." lines.
PROGRESS = re.compile(r"^\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]|^\s*\[\s*(\d+)%\]")


def pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def run_build(cmd: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run the wheel build, showing its progress as one line a step; the whole log on failure."""
    started = time.monotonic()
    shown = -1
    tty = sys.stdout.isatty()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            match = PROGRESS.match(line)
            if match is None:
                continue
            if match.group(3) is not None:
                percent = int(match.group(3))
            else:
                percent = 100 * int(match.group(1)) // max(1, int(match.group(2)))
            # One line every 5%, so a log file or CI shows the build moving without flooding.
            if percent // 5 == shown // 5 and percent != 100:
                continue
            shown = percent
            elapsed = time.monotonic() - started
            text = f"  building llama.cpp: {percent:3d}%  ({elapsed:4.0f} s)"
            if tty:
                print("\r" + text, end="", flush=True)
            else:
                print(text, flush=True)
        code = proc.wait()
    if tty:
        print()
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-60:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"install_llama: building {PACKAGE} failed (exit {code}); log: {log_path}")
    print(f"  built in {time.monotonic() - started:.0f} s", flush=True)


def build_wheel(version: str, args: list[str], dest: Path) -> Path:
    cpus = os.cpu_count() or 1
    print(
        f"Building llama.cpp for this CPU family ({PACKAGE} {version}, {' '.join(args)}): "
        f"once per machine, about {max(1, round(8 / cpus))}-{max(2, round(14 / cpus))} minutes"
        f" on {cpus} cores; later installs reuse {dest}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="spout-llama-") as tmp:
        work = Path(tmp)
        # The sdist through pip's HTTP cache (a download, not a built wheel: safe to reuse).
        print(f"  fetching the {PACKAGE} {version} source (about 75 MB)", flush=True)
        subprocess.run(
            pip(
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{PACKAGE}=={version}",
                "-d",
                str(work / "sdist"),
            ),
            check=True,
        )
        (sdist,) = (work / "sdist").iterdir()
        env = dict(os.environ)
        env["CMAKE_ARGS"] = " ".join(args)
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(cpus)
        env.pop("FORCE_CMAKE", None)
        log_path = work / "build.log"
        # --no-cache-dir: pip neither hands back a wheel it once built with other flags nor
        # stores this one under a key that ignores them.
        run_build(
            pip("wheel", "-v", "--no-deps", "--no-cache-dir", str(sdist), "-w", str(work / "out")),
            env,
            log_path,
        )
        (wheel,) = (work / "out").glob("*.whl")
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / wheel.name
        shutil.move(str(wheel), str(final.with_suffix(".part")))
        os.replace(final.with_suffix(".part"), final)
        (dest / "cmake-args.txt").write_text(" ".join(args) + "\n", encoding="utf-8")
        return final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="llama-cpp-python version")
    parser.add_argument("--print-flags", action="store_true", help="print the CMake flags and exit")
    options = parser.parse_args()

    version = options.version or pinned_version()
    args, note = cmake_flags(platform.machine().lower(), cpu_flags())
    if options.print_flags:
        print(" ".join(args))
        return 0
    if note:
        print(f"Note: {note}", flush=True)

    key = build_key(version, args)
    marker = installed_marker()
    if marker and marker.get("key") == key and installed_version() == version:
        return 0  # this venv already holds this very build

    dest = cache_dir() / key
    wheels = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    wheel = wheels[-1] if wheels else build_wheel(version, args, dest)
    subprocess.run(pip("install", "-q", "--force-reinstall", "--no-deps", str(wheel)), check=True)
    MARKER.parent.mkdir(parents=True, exist_ok=True)
    MARKER.write_text(
        json.dumps({"key": key, "version": version, "cmake_args": args, "wheel": str(wheel)}),
        encoding="utf-8",
    )
    print(f"{PACKAGE} {version} installed: portable build ({' '.join(args)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
