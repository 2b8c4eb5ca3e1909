"""``pxp-bench optimize``: tune a method's parameters on the tuning set, then render the study and its best trials."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli.common import (AmpOption, BatchSizeOption, ClusterOption, ComponentsOption, CpusOption, DataOption,
                                  DatasetOption, DeviceOption, EncodingOption, GpusOption, ImageSizeOption,
                                  MaxLayerRateOption, MemGbOption, ModelOption, PartitionOption, RatesOption,
                                  RecoverOption, RecoverStepsOption, RefPerClassOption, RemovalOption, ScheduleOption,
                                  ScopeOption, TimeLimitOption, WeightsOption, console, counted, err_console,
                                  parse_classes, parse_seeds, slurm_options, user_errors)
from pxp_bench.errors import ConfigError
from pxp_bench.cli.interrupts import INTERRUPTED, command_guard, guarded_command
from pxp_bench.rates import DEFAULT_GRID


@user_errors
@guarded_command("the study was not opened; nothing was written.")
def optimize(
    method: Annotated[Optional[str], typer.Option(help="Attribution method whose searched parameters are tuned.")] = None,
    model: ModelOption = "digits-vgg",
    dataset: DatasetOption = None,
    data: DataOption = None,
    components: ComponentsOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    encoding: EncodingOption = None,
    optimizer: Annotated[str, typer.Option(help="optuna-tpe, optuna-gp, grid, random, nevergrad or a plugin's.")] = "optuna-tpe",
    trials: Annotated[int, typer.Option(help="Trials the study should have in all (a rerun resumes up to this).")] = 50,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    seeds: Annotated[str, typer.Option(help="Seeds the objective averages over, e.g. 0,1,2.")] = "0",
    tune_per_class: Annotated[int, typer.Option(help="Tuning samples per class: from the dataset's tune split where it has one (digits), else from train, disjoint from the reference.")] = 20,
    ref_per_class: RefPerClassOption = 10,
    classes: Annotated[str, typer.Option(help="Number of classes drawn with each seed, or 'all'.")] = "all",
    rates: RatesOption = DEFAULT_GRID,
    storage: Annotated[Optional[str], typer.Option(help="Study storage: an RDB URL (postgresql://..., sqlite:///...); default: a journal file in --out.")] = None,
    study: Annotated[Optional[str], typer.Option(help="Study name; default: from model, components, method and seeds.")] = None,
    pruner: Annotated[str, typer.Option(help="Stop clearly worse trials mid-curve: wilcoxon (paired test against the best trial), median or none.")] = "wilcoxon",
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine sharing the study.")] = 1,
    executor: Annotated[str, typer.Option(help="Where the search runs: local (this command and --jobs - 1 workers) or slurm (--workers jobs of a job array sharing a --storage database; this command follows them, then evaluates the best).")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="slurm: search-only worker jobs sharing the study (default 2).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="slurm: submit the workers and return at once, saying how to follow them.")] = False,
    partition: PartitionOption = None,
    gpus: GpusOption = None,
    time_limit: TimeLimitOption = None,
    cpus: CpusOption = None,
    mem_gb: MemGbOption = None,
    cluster: ClusterOption = None,
    params: Annotated[Optional[Path], typer.Option(help="JSON file of method parameters to fix (not searched).")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="A method parameter to fix, key=value (repeatable).")] = None,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 128,
    amp: AmpOption = None,
    max_layer_rate: MaxLayerRateOption = None,
    removal: RemovalOption = "zero",
    recover: RecoverOption = "none",
    recover_steps: RecoverStepsOption = None,
    schedule: ScheduleOption = "oneshot",
    scope: ScopeOption = "global",
    out: Annotated[Path, typer.Option(help="Folder for the results, best parameters, provenance, history plot and journal.")] = Path("results"),
) -> None:
    """Tune a method's hyperparameters for pruning: the objective is A_PR on the tuning set, never the
    evaluation set, which only scores the best configuration at the end."""
    import optuna

    from pxp_bench.optimize.config import StudyConfig
    from pxp_bench.optimize.report import best_params_json, best_trials, history_plot, provenance_json, trials_summary
    from pxp_bench.optimize.study import StudyRun
    from pxp_bench.optimize.workers import local_workers, usable_jobs
    from pxp_bench.params import parse_param_pairs, read_params_file
    from pxp_bench.plan import Benchmark
    from pxp_bench.rates import parse_rates
    from pxp_bench.results import atomic_write_text, write_result

    bench = Benchmark(model=model, method=method, dataset=dataset, data_root=data, components=components,
                      weights=weights, rates=parse_rates(rates), n_classes=parse_classes(classes),
                      ref_per_class=ref_per_class, tune_per_class=tune_per_class, device=device,
                      batch_size=batch_size, image_size=image_size, amp=amp, max_layer_rate=max_layer_rate,
                      params=read_params_file(params) if params else {}, param_texts=parse_param_pairs(param or []),
                      encoding=encoding, removal=removal, recover=recover, recover_steps=recover_steps,
                      schedule=schedule, scope=scope)
    config = StudyConfig(bench, parse_seeds(seeds), optimizer, trials, timeout, storage, study, out, pruner)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    options = slurm_options(partition=partition, gpus=gpus, time_limit=time_limit, cpus=cpus, mem_gb=mem_gb,
                            cluster=cluster)
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor must be local or slurm for optimize, got '{executor}'.")
    if executor == "local" and (options or workers is not None or detach):
        given = ", ".join(["--workers"] * (workers is not None) + ["--detach"] * detach
                          + [f"--{key.replace('_', '-')}" for key in options])
        raise ConfigError(f"{given} {'is' if given.count(',') == 0 else 'are'} for --executor slurm; on this machine "
                          "give --jobs.")
    if executor == "slurm" and jobs != 1:
        raise ConfigError("--jobs counts processes on this machine; with --executor slurm give --workers.")
    cluster_run = None
    if executor == "slurm":
        from pxp_bench.optimize.cluster import check_cluster_workers

        workers = 2 if workers is None else workers
        cluster_run = check_cluster_workers(config, options, workers)  # before anything is written
        if detach and cluster_run == "local":
            raise ConfigError("--detach leaves the workers to a scheduler; --cluster local runs them under this "
                              "command, which must wait for them.")
    # a failed trial is raised to this command, which reports it (one line for a user error); Optuna's own
    # log of it, an interrupted trial's included, would repeat it with a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run = None
    guard = command_guard()
    guard.output_folders(out)
    guard.kept = lambda: _study_kept(run)
    try:
        run = StudyRun(config)  # every option checked and the runs prepared before anything is written
        if cluster_run is not None:
            if _cluster_search(run, workers, options, cluster_run, detach):
                return
        else:
            with local_workers(config, usable_jobs(jobs) - 1):
                with _trials_bar(run) as look:
                    run.search(on_trial=lambda *_: look())
        outcome = run.outcome()  # once the workers are done: their last trials count
    except KeyboardInterrupt:
        guard.say()
        raise typer.Exit(INTERRUPTED) from None
    name = outcome.study.study_name
    best_path, plot_path = out / f"{name}.best.json", out / f"{name}.history.png"
    provenance_path = out / f"{name}.provenance.json"  # X.best.json <-> X.provenance.json: a suite reads both
    atomic_write_text(best_path, best_params_json(outcome))
    atomic_write_text(provenance_path, provenance_json(outcome))
    history_plot(outcome.study, plot_path)
    top = Table(title=f"study {name}: best completed trials (A_PR on the tuning set, mean over seeds {seeds})")
    for column in ("trial", "tuning A_PR", "parameters"):
        top.add_column(column)
    for trial in best_trials(outcome.study):  # completed only: a stopped trial has no value
        label = " (default)" if trial.user_attrs.get("default") else ""
        top.add_row(f"{trial.number}{label}", f"{trial.value:.4f}",
                    ", ".join(f"{k}={v}" for k, v in sorted(trial.params.items())))
    console.print(top)
    console.print(trials_summary(outcome.study), highlight=False)
    written = [write_result(result, out) for result in outcome.results]
    evaluation = ", ".join(f"seed {r.seed}: {r.metrics['a_pr']:.4f}" for r in outcome.results)
    default = "-" if outcome.default_value is None else f"{outcome.default_value:.4f}"
    console.print(f"tuning A_PR: best {outcome.best_value:.4f}, default {default}; evaluation A_PR of the best: "
                  f"{evaluation}; evaluation reuse {outcome.reuse['hit_rate']:.0%} of "
                  f"{outcome.reuse['hits'] + outcome.reuse['evaluations']} curve points", highlight=False)
    console.print(f"best parameters: [bold]{best_path}[/] (pxp-bench run --params {best_path}); provenance: "
                  f"{provenance_path}; history: {plot_path}; results: {', '.join(str(p) for p in written)}",
                  highlight=False)


@contextmanager
def _trials_bar(run) -> Iterator[Callable[[], None]]:
    """A progress bar of the study's finished trials while the block runs; it yields the update."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as bars:
        task = bars.add_task("trials", total=run.config.trials, completed=run.finished())
        yield lambda: bars.update(task, completed=run.finished())


def _cluster_search(run, workers: int, options: dict[str, str], cluster: str, detach: bool) -> bool:
    """The search by cluster jobs: submitted (none once the study holds its trials), then followed until
    they end, or left to run (``detach``: True, the command is done)."""
    from pxp_bench.cluster import array_id
    from pxp_bench.optimize.cluster import follow, submit_workers

    trials = run.config.trials
    if run.finished() >= trials:
        return False
    jobs = submit_workers(run.config, workers, options)
    logs = Path(run.config.out) / "slurm"
    if detach:
        console.print(f"{counted(workers, 'worker')} submitted as job array {array_id(jobs)} (logs in {logs}); follow "
                      f"them with `squeue -j {array_id(jobs)}`. Once it lists none of them, rerun this command "
                      "without --executor, --detach, --workers and the SLURM options: it evaluates the best "
                      "configuration (and runs any trial still missing, here).", highlight=False, soft_wrap=True)
        return True
    with _trials_bar(run) as look:
        failures = follow(jobs, cluster, look, lambda text: err_console.print(escape(text), highlight=False))
    for line in failures:
        console.print(f"[red]failed[/] {escape(line)} (logs in {logs})", highlight=False, soft_wrap=True)
    if failures and run.finished() < trials:
        console.print(f"The workers ended with {run.finished()} of {trials} trials finished (kept in {run.where()}); "
                      "rerun the command to resume.", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return False  # all its trials, or --timeout stopped the workers: the best so far is evaluated


def _study_kept(run) -> str:
    """What an interrupted `optimize` keeps: the study's finished trials, once it was opened."""
    if run is None:
        return "the study was not opened; nothing was written."
    finished = run.finished()
    return (f"{counted(finished, 'trial')} finished {'is' if finished == 1 else 'are'} kept in {run.where()}; "
            "rerun the same command to resume.")


def register(app: typer.Typer) -> None:
    """Add `optimize` to the app."""
    app.command()(optimize)
