"""The calibration-model math of an estimate: what one training step and iteration cost.

A step's model time comes from a **calibration** (:mod:`kdbench.calibration`): milliseconds
per step of the nnU-Net network measured on one device (``benchmarks/step_benchmark.py``).
Kinds of step:

- a segmenter reading ``c`` of the 4 modalities: the student (1 channel) step plus
  ``(c - 1) / 3`` of the difference to the 4-channel train step;
- with a teacher: plus the measured KD overhead (KD step - student step), once per Monte Carlo
  draw (``mc_samples`` when the strategy has it);
- with a generator: plus one teacher-sized forward per draw;
- times ``relative_step_cost`` when a strategy class declares it (default 1).

**Input pipeline and compilation.** A training iteration is the model's step fed by the data
pipeline. When the calibration has an ``input`` section (CPU seconds of nnU-Net's augmentation
per batch on one core, GPU milliseconds of kdbench's batched augmentation per batch, and the
data workers per GPU), an iteration costs:

- nnU-Net's CPU augmentation (``augmentation: nnunet``, the default):
  ``max(step, cpu_augment_s / data_workers)`` -- the GPU waits for the loader when the workers
  cannot keep up (on BraTS they cannot: 1.4-4.0 s per batch and core);
- kdbench's GPU augmentation (``augmentation: gpu``): ``step + gpu_augment_ms`` (the workers only
  load and crop; assumed to keep up, which ``benchmarks/e2e_benchmark.py`` measures, P3).

With ``compile`` the step figures are the calibration's compiled ones (``train_compiled``,
``kd_compiled``; the 1-channel student and the teacher forward scaled like the train step).
Without an ``input`` section the data pipeline is assumed to keep up.

How these add up over a plan is :mod:`kdbench.estimate`. This module imports no heavy library.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    from kdbench.calibration import Calibration
    from kdbench.types import Plan

#: Augmentation settings the cost model knows (a backbone's ``augmentation`` option).
AUGMENTATIONS = ("nnunet", "gpu")
#: Modalities a 4-channel network reads (the student step is measured with 1).
CHANNELS = 4


@dataclass(frozen=True)
class Pipeline:
    """How a training runs: its augmentation (``nnunet``: nnU-Net's CPU pipeline; ``gpu``:
    kdbench's batched GPU pipeline) and whether the networks are compiled."""

    augmentation: str = "nnunet"
    compile: bool = False

    def describe(self) -> str:
        where = "GPU" if self.augmentation == "gpu" else "nnU-Net's CPU"
        return f"{where} augmentation, {'compiled' if self.compile else 'eager'}"


def protocol_augmentation(plan: Plan) -> str:
    """The backbone's ``augmentation`` option (nnU-Net's CPU pipeline when not set)."""
    return str(plan.protocol.backbone.options.get("augmentation") or "nnunet")


def naive_pipeline(calibration: Calibration) -> Pipeline:
    """nnU-Net's own trainer on a GPU: CPU augmentation, compiled by default when the
    calibration says what compiling costs."""
    return Pipeline("nnunet", calibration.compiled)


def segmenter_step_ms(calibration: Calibration, channels: int,
                      relative_step_cost: float = 1.0) -> float:
    """A segmenter's eager step reading ``channels`` modalities (linear from the 1-channel
    student step to the 4-channel train step), times ``relative_step_cost``."""
    step = calibration.step_ms
    segmenter = step["student"] + (step["train"] - step["student"]) * (channels - 1) / (
        CHANNELS - 1)
    segmenter *= relative_step_cost
    return segmenter


def teacher_step_ms(calibration: Calibration, requires: Collection[str], draws: int) -> float:
    """The eager time a step spends on a teacher (the KD overhead) and a generator (a
    teacher-sized forward), each once per Monte Carlo draw; 0 without either."""
    step = calibration.step_ms
    teacher = 0.0
    if "teacher" in requires:
        teacher += max(step["kd"] - step["student"], 0.0) * draws
    if "generator" in requires:
        teacher += step["teacher_forward"] * draws
    return teacher


def model_step_ms(segmenter_ms: float, teacher_ms: float, calibration: Calibration,
                  compile: bool) -> float:
    """A step's model time: a segmenter's part and a teacher's part (eager figures), scaled
    to the compiled figures when ``compile`` (the segmenter like the train step, the teacher
    like the KD step's extra over the student)."""
    step = calibration.step_ms
    if not compile:
        return segmenter_ms + teacher_ms
    if not calibration.compiled:
        raise KdbenchError("the calibration has no compiled step figures (step_ms."
                           "train_compiled, step_ms.kd_compiled): estimate without --compile, "
                           "or measure them (benchmarks/step_benchmark.py --compile)")
    scale = step["train_compiled"] / step["train"] if step["train"] else 1.0
    extra = step["kd"] - step["student"]
    extra_compiled = step["kd_compiled"] - step["student"] * scale
    teacher_scale = extra_compiled / extra if extra > 0 else scale
    return segmenter_ms * scale + teacher_ms * teacher_scale


def iteration_ms(model_ms: float, calibration: Calibration, pipeline: Pipeline) -> float:
    """One training iteration: the model's step fed by the data pipeline (module docstring)."""
    feed = calibration.input
    if not feed:
        return model_ms
    if pipeline.augmentation == "gpu":
        return model_ms + feed["gpu_augment_ms"]
    return max(model_ms, 1e3 * feed["cpu_augment_s"] / feed["data_workers"])


def input_assumption(calibration: Calibration) -> str:
    """The estimate's assumption about the data pipeline, in words."""
    feed = calibration.input
    if not feed:
        return "data loading keeps up with the GPU (no input stall)"
    loader_ms = 1e3 * feed["cpu_augment_s"] / feed["data_workers"]
    return (
        f"input: nnU-Net's CPU augmentation {feed['cpu_augment_s']:g} s per batch and "
        f"core over {feed['data_workers']:g} workers = one batch every {loader_ms:.1f} ms "
        f"(the GPU waits when its step is shorter); kdbench's GPU augmentation "
        f"+{feed['gpu_augment_ms']:g} ms per step, its workers only loading and cropping "
        "(assumed to keep up; P3 measures it)")
