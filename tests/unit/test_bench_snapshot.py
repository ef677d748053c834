"""bench/queue_data.py: a built queue's snapshot copied into a system's folder."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))   # its sibling modules, as the benchmarks run
import queue_data  # noqa: E402


def test_a_snapshot_restored_into_a_kept_folder_replaces_its_databases_rather_than_landing_inside_them(tmp_path):
    snapshot, kept = tmp_path / "snapshot", tmp_path / "kept"
    for part in queue_data.KEPT:
        (snapshot / part).mkdir(parents=True)
        (snapshot / part / "data").write_text("the snapshot")
        (kept / part).mkdir(parents=True)
        (kept / part / "data").write_text("the run before")
        (kept / part / "left by the run before").write_text("")
    (snapshot / "postgres" / "postmaster.pid").write_text("1")

    queue_data._copy(snapshot, kept)

    for part in queue_data.KEPT:
        assert (kept / part / "data").read_text() == "the snapshot"
        assert sorted(p.name for p in (kept / part).iterdir()) == ["data"], part
