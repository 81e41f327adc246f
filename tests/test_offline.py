"""The offline workshop path: a wheelhouse holds what pip needs to build and install the course without an index.

The full path (every dependency, about 1 GB) is measured by hand and reported in the README; this test keeps the
part that broke before: the course's own package and its build requirement, installed with --no-index.
"""
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_requirements_never_archive_the_repository():
    """`pip download -r requirements*.txt` archives any local path listed (the repository itself, .venv included)."""
    for name in ("requirements.txt", "requirements-dev.txt"):
        lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
        assert not [line for line in lines if line.startswith(("-e", ".", "/")) or line == "."], name


def test_course_lib_builds_and_installs_with_no_index(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # the build requirement, as the README's wheelhouse line downloads it (from the machine's usual index)
    subprocess.run([*pip, "download", "--quiet", "--no-deps", "setuptools>=68", "-d", str(wheelhouse)], check=True)
    offline = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(wheelhouse)], check=True, env=offline)
    (wheel,) = wheelhouse.glob("course_lib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("course_lib/") for n in names) and not any(n.startswith(("notebooks/", "data/", ".venv/"))
                                                                         for n in names)
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "course_lib"], check=True, env=offline)
    shown = subprocess.run([str(python), "-m", "pip", "show", "course_lib"], capture_output=True, text=True, env=offline)
    assert "Name: course_lib" in shown.stdout
