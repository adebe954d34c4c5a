"""Runs of a research script, two at a time, each in a fresh spawned process
(a run may patch modules; no patch reaches the next run), their rows appended
to a JSON list."""
import json
import multiprocessing
import os
from typing import Callable, Dict, List


def run_and_append(one_run: Callable[[Dict], Dict], jobs: List[Dict], out: str,
                   processes: int = 2) -> List[Dict]:
    """Calls :obj:`one_run` on every job in :obj:`processes` spawned
    processes, one process per job, and appends the returned rows to the JSON
    list in :obj:`out` (created if missing). Returns the new rows."""
    with multiprocessing.get_context("spawn").Pool(processes, maxtasksperchild=1) as pool:
        rows = pool.map(one_run, jobs, chunksize=1)
    old = []
    if os.path.exists(out):
        with open(out) as f:
            old = json.load(f)
    with open(out, "w") as f:
        json.dump(old + rows, f, indent=1)
    return rows
