"""A full disk in the result commands: one line, exit 1, and nothing half-written left behind
(the files of an earlier report stay as they were). The disk is a small tmpfs mounted for the
test (root only; elsewhere the test skips, saying so)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # commands run in subprocesses on a full disk


def fill(disk: Path) -> None:
    """Take every free block of ``disk``."""
    with open(disk / "filler", "wb", buffering=0) as f:  # unbuffered: closing writes nothing
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filler"
    }


@pytest.mark.parametrize(
    "command", [["report"], ["compare", "0", "1"], ["rerun"]], ids=["report", "compare", "rerun"]
)
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(
    copy_tiny_study, small_disk, cli, command
):
    disk = small_disk("4m")
    study = copy_tiny_study(disk)
    work = study.parent.parent
    command = [command[0], f"results/{study.name}", *command[1:]]
    first = cli("report", f"results/{study.name}", cwd=work)  # an earlier report: must survive
    assert first.returncode == 0, first.stderr
    before = files(work)
    fill(disk)
    r = cli(*command, cwd=work)
    assert r.returncode == 1, (r.stdout, r.stderr)
    (line,) = r.stderr.splitlines()
    assert line.startswith("mlpsearch: error: ") and "No space left on device" in line
    assert "Traceback" not in r.stderr
    assert files(work) == before  # every earlier file whole, no new half file
    leftovers = [p for p in work.rglob("*") if p.name.startswith(".")]
    assert not leftovers, leftovers
    (disk / "filler").unlink()
    again = cli(*command, cwd=work)  # with room again, the same command works
    assert again.returncode == 0, again.stderr
