"""sr from Python: check, compile, train and sample spatial-reasoning experiments (.srx).

The functions mirror the stages of the ``sr`` command line and run the same Rust library:

- :func:`check` -- diagnostics of a file (a list of dicts; raises nothing for a file with errors)
- :func:`compile` -- the checked plan as a dict
- :func:`run` -- train, sample and evaluate as ``sr run``; the results table as a dict
- :func:`sample` -- samples of a trained checkpoint as NumPy arrays (raw form), with traces
- :func:`load_checkpoint` -- weights of a checkpoint as NumPy arrays, and the run's plan
- :func:`components` -- the component catalogue

Every failure raises :class:`SrError`, which carries the code (``E0301``, ``R0301``, ...) and the
rendered message. ``run`` and ``sample`` release the GIL, report progress to an optional callback and
stop cleanly on Ctrl-C (training saves a checkpoint first; continue with ``resume=True``).
"""

from ._native import (
    SrError,
    __version__,
    check,
    compile,
    components,
    load_checkpoint,
    run,
    sample,
)

__all__ = [
    "SrError",
    "__version__",
    "check",
    "compile",
    "components",
    "load_checkpoint",
    "run",
    "sample",
]
