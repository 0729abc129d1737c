"""Type stubs of sr's native module (re-exported by ``sr``)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

Source = Union[str, "os.PathLike[str]"]
"""A path (str or os.PathLike), or .srx text: a str that contains a newline or ``{``."""

SetValue = Union[bool, int, float, str]
"""An override value: bool, int and float are written as literals; a str is .srx value syntax as on
the command line (``"independent"``, ``'"test"'``, ``"adamw { lr = 1e-3 }"``)."""

class Label(TypedDict):
    file: str
    line: int
    column: int
    start: int
    end: int
    message: str

class Diagnostic(TypedDict):
    """One diagnostic, as ``sr check --format json`` writes it."""

    code: str
    severity: str  # "error" or "warning"
    message: str
    file: Optional[str]
    line: Optional[int]  # 1-based
    column: Optional[int]  # 1-based
    labels: List[Label]
    help: Optional[str]

class Progress(TypedDict):
    """What a progress callback receives after every training step or denoiser call."""

    stage: str  # "train", "evaluate" or "sample"
    label: str
    done: int
    total: int
    loss: Optional[float]  # training only

ProgressCallback = Callable[[Progress], Any]

class ResultRow(TypedDict):
    sampler: str
    metric: str
    split: str
    scores: Dict[str, float]
    samples: int
    steps: float  # mean denoiser calls per batch
    seconds: float

class Results(TypedDict, total=False):
    experiment: str
    train_steps: int  # the step training reached
    train_start: int  # the step this call's training started from (non-zero when it resumed)
    train_seconds: float  # this call's training time
    final_loss: Optional[float]  # the loss of this call's last step
    parameters: int
    rows: List[ResultRow]
    digit_classifier: Dict[str, float]  # only when a metric read image-Sudoku cells
    table: str  # the Markdown table `sr run` prints
    out: str  # the run folder

class Trace(TypedDict):
    """The trace of the first batch, b = min(n, the sampler's batch) samples."""

    t: npt.NDArray[np.float32]  # [S + 1, b, V]
    sigma: Optional[npt.NDArray[np.float32]]  # [S + 1, b, V]; None without an uncertainty head
    latents: npt.NDArray[np.float32]  # [S, b, V, F]

class Samples(TypedDict):
    samples: npt.NDArray[Any]  # [n, *raw_shape]: uint8 Sudoku digits 1..9, else float32
    reference: npt.NDArray[Any]  # same shape and dtype: the split's samples the givens came from
    mask: Optional[npt.NDArray[np.bool_]]  # [n, *raw_shape], True = given
    given: npt.NDArray[np.bool_]  # [n, V], True = given variable
    sampler: str
    split: str
    steps: int
    trace: Optional[Trace]

class OptimizerState(TypedDict):
    kind: str  # "adamw" or "sgd"
    step: int
    tensors: Dict[str, npt.NDArray[Any]]

class CheckpointData(TypedDict):
    step: int
    path: str
    model: Dict[str, npt.NDArray[Any]]
    ema: Optional[Dict[str, npt.NDArray[Any]]]
    optimizer: Optional[OptimizerState]
    plan: Optional[Dict[str, Any]]

class Param(TypedDict):
    name: str
    type: str
    default: Any
    required: bool
    min: Optional[float]
    max: Optional[float]
    doc: str

class Component(TypedDict):
    kind: str
    name: str
    doc: str
    params: List[Param]

class SrError(Exception):
    """An sr failure. ``str(e)`` is the rendered report."""

    code: str  # E…: compiler, R…: runtime, C…: commands
    message: str
    help: Optional[str]
    diagnostics: List[Diagnostic]  # every diagnostic, for a file with errors

def check(source: Source, *, set: Optional[Mapping[str, SetValue]] = None) -> List[Diagnostic]:
    """Diagnostics of a file (errors and warnings); raises nothing for a file with errors."""

def compile(
    source: Source,
    *,
    set: Optional[Mapping[str, SetValue]] = None,
    experiment: Optional[str] = None,
) -> Dict[str, Any]:
    """The checked plan as a dict; raises SrError when the file has errors."""

def run(
    source: Source,
    *,
    out: Union[str, "os.PathLike[str]"] = "runs",
    set: Optional[Mapping[str, SetValue]] = None,
    steps: Optional[int] = None,
    resume: bool = False,
    force: bool = False,
    experiment: Optional[str] = None,
    device: Optional[str] = None,
    evaluate: bool = True,
    eval_samples: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
) -> Results:
    """Train, sample and evaluate as ``sr run``; returns the results."""

def sample(
    source: Source,
    *,
    checkpoint: Union[str, "os.PathLike[str]"],
    n: int = 16,
    sampler: Optional[str] = None,
    trace: bool = False,
    split: Optional[str] = None,
    set: Optional[Mapping[str, SetValue]] = None,
    experiment: Optional[str] = None,
    device: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> Samples:
    """Samples of a trained checkpoint as NumPy arrays in raw form."""

def load_checkpoint(path: Union[str, "os.PathLike[str]"]) -> CheckpointData:
    """Weights of a checkpoint as NumPy arrays, and the run's plan."""

def components(name: Optional[str] = None) -> List[Component]:
    """The component catalogue, or the entries matching a kind, a name or kind.name."""
