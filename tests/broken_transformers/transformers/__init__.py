"""Test-only: a ``transformers`` that fails to import as the real one did in one H200 probe process.

For tests/test_supervisor.py and tests/test_frontier_probe.py. Python finds this package before the real
one when its parent folder leads ``PYTHONPATH``; the tests put it there only for the training processes
they start. Importing it raises transformers' own message for a lazy import that failed, chained from the
cause that message hides (``raise ... from``). With ``LIGER_BENCH_TEST_BREAK_ONCE`` naming a file, only the
first process fails (it creates the file); a later one steps aside and imports the real transformers.
"""

import importlib
import os
import sys

_once = os.environ.get("LIGER_BENCH_TEST_BREAK_ONCE")
if _once and os.path.exists(_once):
    _shadow = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _shadow]
    del sys.modules[__name__]
    sys.modules[__name__] = importlib.import_module(__name__)
else:
    if _once:
        open(_once, "w").close()
    try:
        raise RuntimeError("CUDA driver initialization failed")
    except RuntimeError as err:
        raise ModuleNotFoundError(
            "Could not import module 'TrainerCallback'. Are this object's requirements defined correctly? "
            "Set the logging verbosity to DEBUG for the original import error."
        ) from err
