"""Build llama.cpp's own ``llama-server`` from the llama-cpp-python sdist spout pins, portably.

Why: the end-to-end tests (tests/real_servers/) run spout's OpenAI chat, Responses and
Anthropic adapters against a real server that streams real tokens on all three wires. The
llama.cpp vendored in the pinned sdist has such a server (``tools/server``), the same llama.cpp
the local provider runs, so the tests need no other download than the sdist.

The build is portable exactly as scripts/install_llama.py's is (its flags, never
GGML_NATIVE: a native llama.cpp segfaults on AMX Xeons), builds the ``llama-server`` target
only, with llama.cpp's own libraries linked in and without libcurl, and is cached keyed by the version, the flags and
the machine (``$SPOUT_LLAMA_SERVER_CACHE``, else ``$XDG_CACHE_HOME/spout/llama-server``, else
``~/.cache/spout/llama-server``): the first run takes about 5 minutes on 2 idle cores (22 while
three other test runs shared them), later runs a second.

Usage::

    python scripts/build_llama_server.py            # build if needed; print the binary's path
    python scripts/build_llama_server.py --cached   # print the path if built, else exit 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from install_llama import PACKAGE, cmake_flags, cpu_flags, pinned_version, pip, run_build

TARGET = "llama-server"
#: Options besides the CPU flags: llama.cpp's and ggml's libraries linked into the binary (no
#: libllama.so to find at run time; the system's libstdc++, libgomp and, where CMake found it,
#: OpenSSL stay shared), no libcurl (the server is given a local file; libcurl's headers may
#: not be installed), no tests or examples (only the one target is built anyway).
BUILD_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
)


def cache_root() -> Path:
    if os.environ.get("SPOUT_LLAMA_SERVER_CACHE"):
        return Path(os.environ["SPOUT_LLAMA_SERVER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spout" / "llama-server"


def build_args() -> list[str]:
    """The CMake arguments: install_llama.py's CPU flags, then this build's own options."""
    args, _note = cmake_flags(platform.machine().lower(), cpu_flags())
    return [*args, *BUILD_OPTIONS]


def binary_path(version: str | None = None, args: list[str] | None = None) -> Path:
    """Where the binary for this version, these flags and this machine is (or will be) kept."""
    version = version or pinned_version()
    args = build_args() if args is None else args
    machine = f"{platform.system()}-{platform.machine()}".lower()
    digest = hashlib.sha256(" ".join([version, machine, *args]).encode()).hexdigest()[:16]
    return cache_root() / f"{TARGET}-{version}-{digest}" / TARGET


def build(version: str, args: list[str], dest: Path) -> None:
    cpus = os.cpu_count() or 1
    # pip's wheel build (install_llama.py) brings its own CMake; this build runs CMake itself.
    cmake = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    if cmake is None:
        raise SystemExit(
            f"build_llama_server: building {TARGET} needs CMake, which is not installed: "
            "apt-get install cmake (.ci/system-deps does), or pip install cmake"
        )
    print(
        f"Building {TARGET} from {PACKAGE} {version} ({' '.join(args)}): once per machine, "
        f"about {max(2, round(9 / cpus))} minutes on {cpus} cores; later runs reuse {dest}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="spout-llama-server-") as tmp:
        work = Path(tmp)
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
        with tarfile.open(sdist) as archive:
            # The "data" filter refuses links and paths that leave the folder (Python 3.12's
            # default, asked for by name where it exists).
            if hasattr(tarfile, "data_filter"):
                archive.extractall(work / "src", filter="data")
            else:  # pragma: no cover - Python before 3.10.12
                archive.extractall(work / "src")
        (top,) = (work / "src").iterdir()
        source = top / "vendor" / "llama.cpp"
        if not (source / "tools" / "server").is_dir():
            raise SystemExit(
                f"build_llama_server: no tools/server in {PACKAGE} {version}'s llama.cpp"
            )
        out = work / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        log_path = work / "build.log"
        configure = [cmake, "-S", str(source), "-B", str(out), *generator, *args]
        run_build(configure, dict(os.environ), log_path)
        compile_cmd = [cmake, "--build", str(out), "--target", TARGET, "-j", str(cpus)]
        run_build(compile_cmd, dict(os.environ), work / "compile.log")
        built = out / "bin" / TARGET
        if not built.is_file():
            raise SystemExit(f"build_llama_server: the build made no {built}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copied under another name and renamed: a binary half copied is never found as built.
        part = dest.with_name(TARGET + ".part")
        shutil.copy2(built, part)
        os.replace(part, dest)
        info = {"version": version, "cmake_args": args, "machine": platform.machine()}
        (dest.parent / "build-info.json").write_text(json.dumps(info) + "\n", encoding="utf-8")


def ensure(version: str | None = None) -> Path:
    """The path of a built llama-server, building it first if it is not in the cache."""
    version = version or pinned_version()
    args = build_args()
    dest = binary_path(version, args)
    if not dest.is_file():
        started = time.monotonic()
        build(version, args, dest)
        print(f"{TARGET} built in {time.monotonic() - started:.0f} s", flush=True)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="llama-cpp-python version")
    parser.add_argument(
        "--cached", action="store_true", help="only print the path if already built, else exit 1"
    )
    options = parser.parse_args()
    if options.cached:
        dest = binary_path(options.version)
        if not dest.is_file():
            print(f"build_llama_server: not built yet ({dest})", file=sys.stderr)
            return 1
    else:
        dest = ensure(options.version)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
