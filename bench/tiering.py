"""Benchmark: one tiering pass over many studies already on the right side: requests to Orthanc, and time.

Usage: .venv/bin/python bench/tiering.py [--studies 10000] [--first-pass 1000]

Runs over the fake Orthanc of the unit tests (a dict-backed port, tests/support/fake_archive.py), since
filling a real Orthanc with 10,000 studies takes longer than the pass itself; the request counts are
the ones a real Orthanc would get, the times leave Orthanc's own answer time out (one listing request
per 1,000 studies, i.e. 10 for 10,000). Three passes:
  1. every study recent (WriteToFileSystem, nothing old yet): only the listing;
  2. every study old and already moved by an earlier pass (remembered in the state file): only the listing;
  3. the one-time first pass over ``--first-pass`` old studies whose files are all on object storage
     already but that no pass has recorded yet (after an upgrade, or written there by WriteToObjectStorage):
     each study is planned by a move job whose steps are all skipped.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from support.fake_archive import FakeArchive  # noqa: E402

from orthanc_objstore.config.sections import TieringConfig  # noqa: E402
from orthanc_objstore.jobs.tiering import TieringPolicy  # noqa: E402

DAY = 86400


def fake_studies(archive: FakeArchive, count: int, age: float) -> None:
    """``count`` studies in the listing only (a pass that skips them never asks for more)."""
    for number in range(count):
        archive.api.studies[f"study-{number:06d}"] = time.strftime("%Y%m%dT%H%M%S", time.gmtime(archive.now - age))


def measured(policy: TieringPolicy, archive: FakeArchive, label: str) -> None:
    archive.api.calls.clear()
    started = time.perf_counter()
    report = policy.run_pass()
    elapsed = time.perf_counter() - started
    print(f"{label:<58} {report.examined:>6} studies  {len(archive.api.calls):>6} requests  {elapsed:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--first-pass", type=int, default=1000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        archive = FakeArchive(root / "a")
        archive.manager.start()
        fake_studies(archive, arguments.studies, age=DAY)
        policy = TieringPolicy(archive.api, archive.manager, TieringConfig(30 * DAY, 3600),
                               str(root / "a" / "tiering.jsonl"), clock=lambda: archive.now)
        measured(policy, archive, "1. all recent (nothing to move)")
        policy.state.append({"moved": [[study, last] for study, last in archive.api.studies.items()]})
        archive.now += 60 * DAY
        measured(policy, archive, "2. all old, already moved (remembered)")
        archive.manager.stop()

        first = FakeArchive(root / "b", mode="WriteToObjectStorage")
        for _ in range(arguments.first_pass):
            first.add_study(40 * DAY, instances=2)  # written to object storage: nothing on the file system
        first.manager.start()
        policy = TieringPolicy(first.api, first.manager, TieringConfig(30 * DAY, 3600),
                               str(root / "b" / "tiering.jsonl"), clock=lambda: first.now)
        measured(policy, first, "3. first pass, old, all on object storage (not recorded)")
        measured(policy, first, "   the same studies at the next pass")
        first.manager.stop()


if __name__ == "__main__":
    main()
