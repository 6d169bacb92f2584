"""The README's two commands exist, CI calls the test one, and (slow) both work in a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _readme_commands() -> list[str]:
    block = re.search(
        r"## Two commands\s+```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL
    )
    assert block, "README.md lost its 'Two commands' block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    assert _readme_commands() == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(
        r"^test:", makefile, re.MULTILINE
    )
    assert "-c constraints.txt" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^torch==", (ROOT / "constraints.txt").read_text(), re.MULTILINE)


@pytest.mark.slow
def test_make_demo_in_a_fresh_clone(tmp_path):
    """`git clone` + `make demo` from nothing: venv, install, run, report (needs the registries)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    result = subprocess.run(
        ["make", "demo", "DEMO_ARGS=--days 12 --members 4"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (clone / "outputs" / "demo" / "evaluation" / "report.html").is_file()
