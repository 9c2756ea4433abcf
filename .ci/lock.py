"""The lock: `requirements.lock`, every package `make setup` installs, at one exact version with its hashes.

`make lock` runs this. It reads the requirements from settings.ini (`requirements` + `dev_requirements`, the
ranges a library user installs), adds what building kalm itself needs (`make setup` installs kalm with
`--no-build-isolation`, so the build back-end comes from the lock too), and resolves them with
`uv pip compile --generate-hashes` for the project's machines (CPython 3.11, Linux x86_64).

torch is resolved but left out of the file: it is installed by `TORCH_SPEC` (the CPU build from local disk here; a
GPU user's own CUDA build elsewhere), and a CUDA build's extra packages (nvidia-*, triton) belong to that build.
It is resolved as the CPU wheel in `--torch-from` (default: the folder pip's `find-links` names on our machines) so
that the lock holds the CPU build's dependencies, not the CUDA build's.

    python .ci/lock.py [--out requirements.lock] [--torch torch==2.13.0+cpu] [--torch-from /opt/wheels] [--upgrade]
    python .ci/lock.py --check-installed   # `make setup`: what this interpreter has installed is what the lock says
    python .ci/lock.py --diff              # `make drift`: the packages whose installed version is not the locked one

Without `--upgrade` the versions already in the lock are kept where the ranges still allow them (uv's preference for
an existing output file); `--upgrade` takes the newest releases — the deliberate step after `make drift`.
"""
import argparse, configparser, re, shlex, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ["setuptools>=64.0", "wheel"]  # pyproject.toml's build-system, for `pip install --no-build-isolation -e .`
PYTHON, PLATFORM = "3.11", "x86_64-manylinux_2_28"


def requirements() -> list[str]:
    "What settings.ini asks for (library + dev), plus kalm's build back-end."
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini", encoding="utf-8")
    d = cfg["DEFAULT"]
    return shlex.split(d.get("requirements", "")) + shlex.split(d.get("dev_requirements", "")) + BUILD


def req_name(req: str) -> str:
    "The package a requirement names (lower case; enough to find torch among settings.ini's requirements)."
    return re.match(r"[A-Za-z0-9._-]+", req.strip()).group(0).lower().replace("_", "-")


def check_installed(lock: Path) -> int:
    "0 when every locked package is installed at its locked version; else one line per difference, and 2."
    from kalm.provenance import lock_differences  # the one lock reader (kalm is installed when `make setup` calls this)
    bad = [f"  {n}: locked {a}, installed {'nothing' if b == '-' else b}" for n, (a, b) in lock_differences(lock).items()]
    if bad:
        print(f"make setup: the installed packages differ from {lock.name}:\n" + "\n".join(bad), file=sys.stderr)
        return 2
    return 0


def diff(lock: Path) -> int:
    "The packages whose installed version differs from the lock (torch aside), as a table; always 0."
    from kalm.provenance import environment, lock_differences
    rows, env = lock_differences(lock), environment(lock)
    print(f"{len(rows)} packages differ from {lock.name} (python {env['python']}, torch {env['torch']}; "
          + ", ".join(f"{k} {env[k]}" for k in ("transformers", "sentence_transformers", "mteb", "datasets", "accelerate")) + "):")
    for n, (a, b) in rows.items():
        print(f"  {n:32} {a:>16} -> {b}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "requirements.lock"))
    ap.add_argument("--torch", default="torch==2.13.0+cpu", help="the torch build the lock is resolved against (not emitted)")
    ap.add_argument("--torch-from", default="/opt/wheels", help="a folder holding that wheel")
    ap.add_argument("--upgrade", action="store_true", help="newest releases the ranges allow, not the locked ones")
    ap.add_argument("--check-installed", action="store_true", help="compare this interpreter's packages with the lock")
    ap.add_argument("--diff", action="store_true", help="list the packages whose installed version is not the locked one")
    a = ap.parse_args(argv)
    if a.check_installed or a.diff:
        return (check_installed if a.check_installed else diff)(Path(a.out))
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not uv:
        sys.exit("make lock: uv is not installed (it is a dev requirement: run `make setup`)")
    if not Path(a.torch_from).is_dir():
        sys.exit(f"make lock: {a.torch_from} does not exist: pass --torch-from, a folder with the {a.torch} wheel")
    reqs = [r for r in requirements() if req_name(r) != "torch"] + [a.torch]
    cmd = [uv, "pip", "compile", "-", "--output-file", a.out, "--generate-hashes", "--python-version", PYTHON,
           "--python-platform", PLATFORM, "--find-links", a.torch_from, "--no-emit-package", "torch",
           "--custom-compile-command", "make lock", "--quiet"] + (["--upgrade"] if a.upgrade else [])
    r = subprocess.run(cmd, input="\n".join(reqs) + "\n", text=True)
    if r.returncode:
        return r.returncode
    n = sum(1 for l in Path(a.out).read_text().splitlines() if l and not l[0].isspace() and not l.startswith("#"))
    print(f"wrote {Path(a.out).relative_to(ROOT) if Path(a.out).is_relative_to(ROOT) else a.out}: {n} packages "
          f"(torch left to TORCH_SPEC; resolved as {a.torch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
