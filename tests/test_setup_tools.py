"""README's test command on a fresh clone: tests/setup-tools, its first step, and the install that follows.

tests/setup-tools runs with a PATH that holds only bash, python3 and id, so every program it looks for is missing, and as a
user that is not root, so it must not reach apt-get (nothing is installed by this test).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "setup-tools"


def run_without_root(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """The script, copied into ``bin_dir`` beside its three programs, run there as ``nobody`` when we are root."""
    shutil.copy(SCRIPT, bin_dir / "setup-tools")
    for name in ("bash", "id"):
        (bin_dir / name).symlink_to(shutil.which(name) or pytest.fail(f"{name} not on PATH"))
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    drop = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot run the script as another user")
        drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    command = [*drop, str(bin_dir / "bash"), str(bin_dir / "setup-tools")]
    return subprocess.run(command, env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60, check=False)


def test_without_root_it_installs_nothing_and_names_each_missing_tool_with_its_package() -> None:
    with tempfile.TemporaryDirectory() as folder:  # in /tmp, not below pytest's root-only base folder
        Path(folder).chmod(0o755)
        result = run_without_root(Path(folder))
    assert result.returncode == 0 and "id: command not found" not in result.stderr, result.stderr
    assert "not root with apt-get, so nothing installed" in result.stderr
    packages = {
        "lua5.4": "lua5.4",
        "ruby": "ruby",
        "chromium": "chromium",
        "mvn": "maven",
        "pcre2-config": "libpcre2-dev",
    }
    for tool, package in packages.items():
        assert f"tests/setup-tools: {tool} missing (Debian package: {package}" in result.stderr, result.stderr


def test_setup_cfg_lists_every_package_folder() -> None:
    """The test command installs the checkout (not editable): a folder missing here is missing from the install."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    folders = {
        ".".join(init.parent.relative_to(ROOT / "plugin").parts) for init in (ROOT / "plugin").rglob("__init__.py")
    }
    assert folders - listed == set()
