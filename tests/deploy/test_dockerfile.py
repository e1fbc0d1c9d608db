"""deploy/docker/Dockerfile against pyproject.toml: what its wheel stage copies, what its build
context lets through, and which extras it installs. No image is built (no Docker daemon needed);
the wheel is, from exactly the files the Dockerfile copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / "deploy" / "docker" / "Dockerfile.dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _stage(name: str) -> str:
    """The instructions of one build stage (up to the next FROM)."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.S | re.M)
    assert match, f"the Dockerfile has no stage {name!r}"
    return match.group(1)


def _wheel_sources() -> list[str]:
    """The source paths of the COPY instructions of the `wheel` stage."""
    return [src for line in _stage("wheel").splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]]


def test_wheel_stage_copies_every_package_directory():
    setuptools = PYPROJECT["tool"]["setuptools"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *setuptools["package-dir"].values()}
    missing = sorted(needed - set(_wheel_sources()))
    assert not missing, f"add COPY lines to the wheel stage of deploy/docker/Dockerfile for {missing}"


def test_build_context_lets_the_copied_sources_through():
    reincluded = {line[1:].rstrip("/") for line in DOCKERIGNORE.splitlines() if line.startswith("!")}
    missing = sorted(set(_wheel_sources()) - reincluded)
    assert not missing, f"deploy/docker/Dockerfile.dockerignore excludes {missing}: add !PATH lines"


def test_the_copied_sources_build_a_wheel_with_every_package(tmp_path):
    src = tmp_path / "src"
    for path in _wheel_sources():
        origin, target = ROOT / path, src / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "wheels"), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "wheels").glob("omnivec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert any(n.startswith(package.replace(".", "/") + "/") for n in names), f"{package} is missing from the wheel"


def test_installed_extras_exist_in_pyproject():
    installed = {extra for group in re.findall(r"\.whl\)?\[([\w,-]+)\]", DOCKERFILE) for extra in group.split(",")}
    assert installed == {"export", "triton"}
    assert installed <= set(PYPROJECT["project"]["optional-dependencies"])


def test_serving_images_install_no_torch_extras():
    """Only the Triton client (no torch) may come on top of the base package in serving images."""
    torch_free = {"triton"}
    assert not {dep.split("[")[0].split(">")[0].lower() for dep in PYPROJECT["project"]["optional-dependencies"]["triton"]} & {"torch", "open_clip_torch"}
    for stage in ("serve", "serve-gpu"):
        installs = [line for line in _stage(stage).splitlines() if "pip install" in line and "omnivec-" in line]
        extras = {e for line in installs for group in re.findall(r"\[([\w,-]+)\]", line) for e in group.split(",")}
        assert installs and extras <= torch_free, f"stage {stage} must install the torch-free package (extras {extras})"
