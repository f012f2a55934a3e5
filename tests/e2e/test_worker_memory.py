"""The worker's worst pages against its MemorySize, in a fresh process as Lambda runs it (bench/worker_memory.py).

The worst page the stack accepts is MAX_PAGE_BYTES of the smallest releases. The look-ahead holds at most two
pages, so two such pages are the most a batch of any size holds at once; `python bench/worker_memory.py` runs the
full batch (BATCH_SIZE pages) and gives the figure quoted in the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingest.worker import MEMORY_SIZE_MB

BENCH = Path(__file__).resolve().parents[2] / "bench" / "worker_memory.py"


def test_two_worst_pages_peak_within_90_percent_of_the_worker_s_memory_size(migrated: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--pages", "2", "--same"], capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": migrated}, timeout=900)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    assert result["page_bytes"] >= 16 * 1024 * 1024 and result["releases_per_page"] > 250_000
    assert result["memory_size_mb"] == MEMORY_SIZE_MB
    assert result["peak_mib"] <= 0.9 * MEMORY_SIZE_MB, result
    # Bounded by design, not by the size: the same pages fit the 256 MB the worker had before.
    assert result["peak_mib"] <= 0.9 * 256, result
