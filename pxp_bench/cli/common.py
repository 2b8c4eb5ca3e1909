"""What every command shares: consoles, one-line errors (exit 2) and warnings, progress, option types, parsers."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from pxp_bench.errors import ConfigError, PxpBenchError

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    print_error(message)
    raise typer.Exit(2)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line: Python's default adds the file and source line of the
    ``warnings.warn`` call, which tell a user nothing."""
    err_console.print(f"[yellow]Warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def user_errors(command):
    """Turn a `PxpBenchError` into one clear line on stderr and exit status 2, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PxpBenchError as exc:
            fail(str(exc))

    return wrapper


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` (of `optimize` and `suite run`) as a tuple of seeds in the one seed range
    (`pxp_bench.seeds.MAX_SEED`); an empty item is refused, not dropped, since the list is shown as given."""
    from pxp_bench.seeds import check_seed

    parts = [part.strip() for part in text.split(",")]
    if "" in parts:
        raise ConfigError(f"--seeds '{text}' has an empty item; write a comma list of integers such as 0,1,2.")
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(f"--seeds expects a comma list of integers such as 0,1,2, got '{text}'.") from None
    for seed in seeds:
        check_seed(seed, "--seeds")
    return seeds


def parse_classes(text: str) -> int | None:
    """``--classes N`` (of `run` and `optimize`): a number of classes of at least 2, or None for 'all'."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--classes expects a number or 'all', got '{text}'.") from None
    if value < 2:
        raise ConfigError(f"--classes must be at least 2 (with one class every metric is trivially 1.0), "
                          f"got {value}.")
    return value


def counted(number: int, noun: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


class RichProgress:
    """Rich progress bars for the benchmark's stages."""

    def __init__(self, progress) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}
        self._totals: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._totals[stage] = total

    def advance(self, stage: str, amount: int = 1) -> None:
        self._progress.advance(self._tasks[stage], amount)

    def finish(self, stage: str) -> None:
        self._progress.update(self._tasks[stage], completed=self._totals[stage])


# Options `run` and `optimize` share, declared once (the last five: the condition, `pxp_bench.conditions`).
ModelOption = Annotated[str, typer.Option(help="Model name (see `pxp-bench list models`).")]
DatasetOption = Annotated[Optional[str], typer.Option(help="Dataset; default: the model's own.")]
DataOption = Annotated[Optional[Path], typer.Option(help="Data root, for datasets that need one.")]
ComponentsOption = Annotated[Optional[str], typer.Option(help="filters, neurons or heads; default: the model family's.")]
WeightsOption = Annotated[Optional[str], typer.Option(help="default (pretrained or packaged), none (random init; torchvision and timm models) or a checkpoint file (.safetensors or a torch state dict).")]
ImageSizeOption = Annotated[Optional[int], typer.Option(
    "--image-size", "--seq-len",
    help="Input size, for models that accept one: pixels per side of an image (16 to 4096), tokens per sequence of a language model (2 to its context).")]
EncodingOption = Annotated[Optional[str], typer.Option(help="Text encoding of a text dataset's files (--dataset text), e.g. latin-1 or cp1252; default utf-8, read strictly.")]
RatesOption = Annotated[str, typer.Option(help="Pruning rates: '0,0.1,0.5' or start:stop:step (stop excluded).")]
RefPerClassOption = Annotated[int, typer.Option(help="Reference samples per class (from train).")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
BatchSizeOption = Annotated[int, typer.Option(help="Batch size for scoring and evaluation (on a CPU at most what keeps the largest activation within 32 MB).")]
AmpOption = Annotated[Optional[str], typer.Option(help="Evaluate under autocast: bf16 or fp16.")]
MaxLayerRateOption = Annotated[Optional[float], typer.Option(help="Prune at most this fraction of any layer (0 < R < 1; Torch-Pruning's max pruning ratio): the global ranking skips a layer's components at its cap (a layer of n gives up at most floor(R * n); a cap that lets no layer give up one is refused). Default: no cap, the paper's protocol.")]
RemovalOption = Annotated[str, typer.Option(help="How a pruned component is removed: zero (the paper's) or mean (replaced by its mean output over the reference samples; folded into the next layer's bias when slimmed, where exact).")]
RecoverOption = Annotated[str, typer.Option(help="After pruning at each rate: none (the paper's), bn (re-estimate BatchNorm statistics on 16 training batches) or finetune (--recover-steps SGD steps); the record keeps both curves.")]
RecoverStepsOption = Annotated[Optional[int], typer.Option(help="Fine-tuning steps per rate with --recover finetune (batch 64, SGD lr 0.01, momentum 0.9); default 100.")]
ScheduleOption = Annotated[str, typer.Option(help="oneshot (score once, the paper's) or iterative (score the pruned model again before each rate; the pruned stay pruned).")]
ScopeOption = Annotated[str, typer.Option(help="global (the least relevant of the whole model, the paper's) or layer (the same fraction of every layer).")]
# a SLURM job's resources (`pxp_bench.cluster`), for `suite run --executor slurm` and `optimize --executor slurm`
PartitionOption = Annotated[Optional[str], typer.Option(help="slurm: the partition (default: the cluster's).")]
GpusOption = Annotated[Optional[int], typer.Option(help="slurm: GPUs per job (default 1).")]
TimeLimitOption = Annotated[Optional[int], typer.Option(help="slurm: minutes per job before SLURM stops it (default 120).")]
CpusOption = Annotated[Optional[int], typer.Option(help="slurm: CPU cores per job (default 8).")]
MemGbOption = Annotated[Optional[int], typer.Option(help="slurm: memory per job in GB (default 32).")]
ClusterOption = Annotated[Optional[str], typer.Option(help="slurm: slurm, or local to try the submission path on this machine.")]


def slurm_options(**values) -> dict[str, str]:
    """The SLURM options given on the command line, as the executor reads them (name -> text)."""
    return {key: str(value) for key, value in values.items() if value is not None}
