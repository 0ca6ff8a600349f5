"""Test-only, for the frontier probes of test_frontier_probe.py: a host memory limit and a peak log.

Python imports this module at start-up when its folder is on ``PYTHONPATH``; the test puts it there
only while probes run, so only their processes read it. ``LIGER_BENCH_TEST_ADDRESS_SPACE_LIMIT``
(bytes) becomes the process's ``RLIMIT_AS``, so that an allocation past it fails for real
(``MemoryError``, or torch's ``DefaultCPUAllocator: can't allocate memory``). At a normal exit the
process appends its command line and peak address space (``VmPeak``, bytes) as a JSON line to
``LIGER_BENCH_TEST_PEAK_LOG``.
"""

import atexit
import json
import os
import resource
import sys

_limit = os.environ.get("LIGER_BENCH_TEST_ADDRESS_SPACE_LIMIT")
if _limit:
    resource.setrlimit(resource.RLIMIT_AS, (int(_limit), int(_limit)))


def _log_peak() -> None:
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmPeak:"))
    with open(os.environ["LIGER_BENCH_TEST_PEAK_LOG"], "a") as log:
        log.write(json.dumps({"argv": sys.argv, "vm_peak_bytes": peak_kb * 1024}) + "\n")


if os.environ.get("LIGER_BENCH_TEST_PEAK_LOG"):
    atexit.register(_log_peak)
