"""The ``pxp-bench`` command line: parses options, calls the library, renders with rich.

Heavy libraries (torch and everything above it) are imported inside the commands, so that
``pxp-bench --help`` stays fast. User errors print one line and exit with status 2; Python
warnings print as one ``Warning:`` line.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli_support import (
    RichProgress,
    console,
    err_console,
    fail,
    parse_seeds,
    print_error,
    show_warning,
    user_errors,
)
from pxp_bench.collapse import layer_collapse
from pxp_bench.errors import ConfigError, PxpBenchError
from pxp_bench.interrupts import INTERRUPTED, command_guard, guarded_command
from pxp_bench.rates import DEFAULT_GRID
from pxp_bench.records.cli import verify
from pxp_bench.suites.cli import suite_app

if TYPE_CHECKING:
    from pxp_bench.results import Result

app = typer.Typer(
    name="pxp-bench",
    help="Benchmark attribution methods for pruning neural networks by explaining them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
zoo_app = typer.Typer(help="The embedded model zoo: train a zoo model's checkpoint and manifest (`zoo train`).",
                      no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(suite_app, name="suite")

LIST_KINDS = ("models", "methods", "datasets", "optimizers", "executors", "tasks")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"pxp-bench {version('pxp-bench')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Benchmark attribution methods for pruning neural networks by explaining them."""
    warnings.showwarning = show_warning  # again here for apps invoked without main(), as in tests


def _parse_classes(text: str) -> int | None:
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


def _format(value: float | None, pattern: str = "{:.4f}") -> str:
    return "-" if value is None else pattern.format(value)


def _render_result(result: Result, path: Path) -> None:
    curve = Table(title=f"{result.method} ({result.variant}) on {result.model} / {result.components}")
    curve.add_column("rate", justify="right")
    curve.add_column("pruned", justify="right")
    curve.add_column("top-1", justify="right")
    perplexity = "perplexity" in result.curve[0]  # a language model's curve
    if perplexity:
        curve.add_column("perplexity", justify="right")
    probe = result.samples.get("probe")  # a dataset's probe, e.g. the corpus' copied bytes
    if probe:
        curve.add_column(f"{probe} acc", justify="right")
    slim = result.evaluate == "slim"
    batch = next((point["latency_batch_size"] for point in result.curve if "latency_batch_size" in point), None)
    if slim:
        curve.add_column("params", justify="right")
        curve.add_column("MFLOPs", justify="right")
    if batch is not None:
        curve.add_column("ms (1)", justify="right")
        curve.add_column(f"ms ({batch})", justify="right")
    for point in result.curve:  # a point evaluated masked after a slimming fallback has no efficiency
        row = [f"{point['rate']:.2f}", str(point["pruned"]), f"{point['accuracy']:.4f}"]
        if perplexity:
            row.append(f"{point['perplexity']:.3f}")
        if probe:
            row.append(f"{point[f'{probe}_accuracy']:.4f}")
        if slim:
            flops = point.get("flops")
            row += [_format(point.get("parameters"), "{:,}"), _format(None if flops is None else flops / 1e6, "{:,.1f}")]
        if batch is not None:
            row += [_format(point.get("latency_ms_batch1"), "{:.2f}"), _format(point.get("latency_ms_batch"), "{:.1f}")]
        curve.add_row(*row)
    console.print(curve)
    metrics = Table(title=f"metrics (evaluated {result.evaluate})")
    for column in ("A_PR", "Top-PR", "AUC", "acc@25%", "acc@50%", "acc@75%", *([f"{probe} A_PR"] if probe else [])):
        metrics.add_column(column, justify="right")
    m = result.metrics
    metrics.add_row(_format(m["a_pr"]), _format(m["top_pr"], "{:.2f}"), _format(m["auc"]),
                    _format(m["acc_25"]), _format(m["acc_50"]), _format(m["acc_75"]),
                    *([_format(m[f"{probe}_apr"])] if probe else []))
    console.print(metrics)
    if slim:
        gains = Table(title="at Top-PR, of the unpruned model")
        for column in ("parameters", "FLOPs", "speedup (eval batch)"):
            gains.add_column(column, justify="right")
        gains.add_row(_format(m.get("params_at_top_pr"), "{:.1%}"), _format(m.get("flops_at_top_pr"), "{:.1%}"),
                      _format(m.get("speedup_at_top_pr"), "{:.2f}x"))
        console.print(gains)
    collapse_rate, emptied = layer_collapse(result.rates, result.layers)
    cap = result.samples.get("max_layer_rate")
    capped = f" (at most {cap:.0%} of any layer pruned)" if cap is not None else ""
    console.print(f"layer collapse: {'none within the grid' if collapse_rate is None else f'{collapse_rate:.2f}, emptying ' + ', '.join(emptied)}"
                  f"{capped}", highlight=False, soft_wrap=True)
    if result.agreement is not None:
        agree = result.agreement
        console.print(f"agreement with ablation: Spearman rho {_format(agree['spearman'], '{:.3f}')}, pruned-set overlap "
                      f"{_format(agree['overlap_25'], '{:.0%}')} at 25 %, {_format(agree['overlap_50'], '{:.0%}')} at 50 %",
                      highlight=False, soft_wrap=True)
    console.print(f"result written to [bold]{path}[/]", highlight=False)


# Options `run` and `optimize` share, declared once.
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
EvaluateOption = Annotated[str, typer.Option(help="slim: each rate on a physically slimmed copy where the model allows (same accuracy, plus parameters, FLOPs, latency); masked: mask the original.")]
MaxLayerRateOption = Annotated[Optional[float], typer.Option(help="Prune at most this fraction of any layer (0 < R < 1; Torch-Pruning's max pruning ratio): the global ranking skips a layer's components at its cap (a layer of n gives up at most floor(R * n); a cap that lets no layer give up one is refused). Default: no cap, the paper's protocol.")]
LatencyOption = Annotated[int, typer.Option(help="The fewest timed forward passes per latency (slim; at batch 1 and the evaluation batch, after a warm-up; median and IQR): at least 5, or 0 for no latency.")]


@app.command()
@user_errors
@guarded_command("no result was written; rerun the same command.")
def run(
    ctx: typer.Context,
    model: ModelOption = "digits-vgg",
    method: Annotated[Optional[str], typer.Option(help="Attribution method; default: the best available.")] = None,
    dataset: DatasetOption = None,
    data: DataOption = None,
    components: ComponentsOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    encoding: EncodingOption = None,
    rates: RatesOption = DEFAULT_GRID,
    classes: Annotated[str, typer.Option(help="Number of classes drawn with the seed, or 'all'.")] = "all",
    ref_per_class: RefPerClassOption = 10,
    tune_per_class: Annotated[int, typer.Option(help="Tuning samples per class (0 = none; used by optimisation): from the dataset's tune split where it has one (digits), else from train.")] = 0,
    seed: Annotated[int, typer.Option(help="The run's seed: classes, samples, random baseline.")] = 0,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 128,
    amp: AmpOption = None,
    evaluate: EvaluateOption = "slim",
    latency_repeats: LatencyOption = 5,
    max_layer_rate: MaxLayerRateOption = None,
    agreement: Annotated[bool, typer.Option("--agreement", help="Also score the reference set by ablation (cached in --out/ablation-cache) and record the method's Spearman rho and pruned-set overlap with it.")] = False,
    preset: Annotated[Optional[str], typer.Option(help="A named parameter preset of the method.")] = None,
    params: Annotated[Optional[Path], typer.Option(help="JSON file of method parameters.")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="A method parameter as key=value (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the JSON result.")] = Path("results"),
    save_scores: Annotated[bool, typer.Option("--save-scores", help="Also write the scores (safetensors) beside the result.")] = False,
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Evaluate saved scores instead of scoring.")] = None,
    to: Annotated[Optional[Path], typer.Option("--to", help="Export the slimmed model of one rate to this .pt2 file (and a .json sidecar).")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="Export at this rate of the grid (default: --at top-pr).")] = None,
    at: Annotated[str, typer.Option("--at", help="Export at: top-pr (the largest rate keeping 95 % of the correct predictions).")] = "top-pr",
    plot: Annotated[bool, typer.Option("--plot", help="Also draw the curve as a PNG beside the JSON result (same name, .png).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Let --to replace an existing .pt2 and its .json sidecar.")] = False,
) -> None:
    """Score components, prune the least relevant globally at each rate, and measure top-1 accuracy.

    `pxp-bench export` runs the same and writes the slimmed model of one rate (--to FILE.pt2).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pxp_bench.benchmark import Benchmark, plan_benchmark, prepare, run_prepared
    from pxp_bench.params import parse_param_pairs, read_params_file
    from pxp_bench.rates import parse_rates
    from pxp_bench.results import ensure_writable_dir, write_result
    from pxp_bench.agreement import ABLATION_CACHE, check_ablation_cache

    bench = Benchmark(
        model=model, method=method, dataset=dataset, data_root=data, components=components,
        weights=weights, rates=parse_rates(rates), n_classes=_parse_classes(classes),
        ref_per_class=ref_per_class, tune_per_class=tune_per_class, seed=seed, device=device,
        batch_size=batch_size, preset=preset, image_size=image_size, amp=amp, evaluate=evaluate,
        latency_repeats=latency_repeats, params=read_params_file(params) if params else {},
        param_texts=parse_param_pairs(param or []), scores_file=scores, max_layer_rate=max_layer_rate,
        agreement=agreement, ablation_cache=out / ABLATION_CACHE if agreement else None, encoding=encoding,
    )
    exporting = ctx.info_name == "export" or to is not None
    if ctx.info_name == "export" and to is None:
        raise ConfigError("export needs --to FILE.pt2: where to write the slimmed model.")
    if at != "top-pr":
        raise ConfigError(f"--at must be top-pr, got '{at}'; for another rate use --rate R.")
    if rate is not None and not exporting:
        raise ConfigError("--rate chooses the rate to export; add --to FILE.pt2 (or use `pxp-bench export`).")
    if force and not exporting:
        raise ConfigError("--force lets --to replace an existing export; add --to FILE.pt2 (or use `pxp-bench export`).")
    plan_benchmark(bench)
    command_guard().output_folders(bench.ablation_cache, out, to.parent if exporting else None)  # gone if left empty
    if exporting:
        from pxp_bench.slim.export import check_destination

        check_destination(to, force=force)
    ensure_writable_dir(out)
    if bench.ablation_cache is not None:
        check_ablation_cache(bench.ablation_cache)
    with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=False) as bars:
        prepared = prepare(bench)
        if exporting:
            from pxp_bench.slim.export import export_rate

            export_rate(list(prepared.rates), 0.0, rate)  # a rate off the grid fails before the work
        result = run_prepared(prepared, progress=RichProgress(bars))
    written = write_result(result, out, save_scores=save_scores)
    command_guard().kept = f"the result is kept in {written}{'; the export was not written' if exporting else ''}."
    _render_result(result, written)
    if plot:
        from pxp_bench.leaderboard import curves_png, write_png

        console.print(f"curve plot written to [bold]{write_png(written.with_suffix('.png'), curves_png([result.to_dict()]))}[/]",
                      highlight=False, soft_wrap=True)
    if exporting:
        from pxp_bench.slim.export import export_result

        info, sidecar = export_result(prepared, result, to, rate, force=force)
        console.print(f"exported the slimmed model at rate {sidecar['rate']:g} ({sidecar['parameters']:,} parameters, "
                      f"top-1 {sidecar['accuracy']:.4f}) to [bold]{to}[/] and [bold]{info}[/]", highlight=False)


app.command("export", help="Run as `run` does, then export the slimmed model of one rate (--to FILE.pt2, "
                           "--rate R or --at top-pr) with a JSON sidecar; it loads with torch.export.load alone.")(run)


@app.command()
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
    params: Annotated[Optional[Path], typer.Option(help="JSON file of method parameters to fix (not searched).")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="A method parameter to fix, key=value (repeatable).")] = None,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 128,
    amp: AmpOption = None,
    max_layer_rate: MaxLayerRateOption = None,
    out: Annotated[Path, typer.Option(help="Folder for the results, best parameters, provenance, history plot and journal.")] = Path("results"),
) -> None:
    """Tune a method's hyperparameters for pruning: the objective is A_PR on the tuning set, never the
    evaluation set, which only scores the best configuration at the end."""
    import optuna
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pxp_bench.optimize.report import best_trials, history_plot, trials_summary
    from pxp_bench.optimize.study import StudyConfig, StudyRun, best_params_json, provenance_json
    from pxp_bench.optimize.workers import local_workers, usable_jobs
    from pxp_bench.params import parse_param_pairs, read_params_file
    from pxp_bench.plan import Benchmark
    from pxp_bench.rates import parse_rates
    from pxp_bench.results import atomic_write_text, write_result

    bench = Benchmark(model=model, method=method, dataset=dataset, data_root=data, components=components,
                      weights=weights, rates=parse_rates(rates), n_classes=_parse_classes(classes),
                      ref_per_class=ref_per_class, tune_per_class=tune_per_class, device=device,
                      batch_size=batch_size, image_size=image_size, amp=amp, max_layer_rate=max_layer_rate,
                      params=read_params_file(params) if params else {}, param_texts=parse_param_pairs(param or []),
                      encoding=encoding)
    config = StudyConfig(bench, parse_seeds(seeds), optimizer, trials, timeout, storage, study, out, pruner)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    # a failed trial is raised to this command, which reports it (one line for a user error); Optuna's own
    # log of it, an interrupted trial's included, would repeat it with a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run = None
    guard = command_guard()
    guard.output_folders(out)
    guard.kept = lambda: _study_kept(run)
    try:
        run = StudyRun(config)  # every option checked and the runs prepared before anything is written
        with local_workers(config, usable_jobs(jobs) - 1):
            with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=err_console) as bars:
                task = bars.add_task("trials", total=trials, completed=run.finished())
                run.search(on_trial=lambda *_: bars.update(task, completed=run.finished()))
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


def _study_kept(run) -> str:
    """What an interrupted `optimize` keeps: the study's finished trials, once it was opened."""
    if run is None:
        return "the study was not opened; nothing was written."
    finished = run.finished()
    return (f"{_count(finished, 'trial')} finished {'is' if finished == 1 else 'are'} kept in {run.where()}; "
            "rerun the same command to resume.")


@app.command("list")
@user_errors
def list_names(
    kind: Annotated[str, typer.Argument(help="models, methods, datasets, optimizers, executors or tasks.")],
    pattern: Annotated[Optional[str], typer.Argument(help="fnmatch wildcard, e.g. 'digits-*'.")] = None,
) -> None:
    """List registered names of one kind, optionally filtered by a wildcard."""
    import difflib

    from pxp_bench.plugins import get_plugins

    if kind not in LIST_KINDS:
        close = difflib.get_close_matches(kind, LIST_KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"cannot list '{kind}'.{hint} Choose one of {', '.join(LIST_KINDS)}.")
    registry = getattr(get_plugins(), kind)
    table = Table(title=kind)
    table.add_column("name", style="bold")
    table.add_column("summary")
    if kind == "methods":
        table.add_column("components")
        table.add_column("parameters")
    table.add_column("plugin")
    for name in registry.names(pattern):
        spec = registry.get(name)
        row = [name, spec.summary]
        if kind == "methods":
            row += [", ".join(sorted(spec.components)),
                    "; ".join(f"{key} {p.describe()}" for key, p in spec.params.items()) or "-"]
        table.add_row(*row, registry.owner(name))
    console.print(table)


@app.command()
@user_errors
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (every name).")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every registered name, not counts and the first few.")] = False,
) -> None:
    """Show the plugins, their versions, where they come from, what they register and which failed."""
    from dataclasses import asdict

    from pxp_bench.plugins import get_plugins

    loaded = get_plugins()
    loaded.collect_all()
    infos = list(loaded.infos.values())
    if as_json:
        typer.echo(json.dumps([{**asdict(info), "status": info.status} for info in infos], indent=2))
        return
    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "source", "status", "registers"):
        table.add_column(column)
    for info in infos:
        registers = "; ".join(_registrations(kind, names, show_all) for kind, names in info.registers.items())
        table.add_row(info.name, info.distribution, info.version, info.source, escape(info.status),
                      registers or "-")
    console.print(table)


SHOWN_NAMES = 6
"""`pxp-bench plugins` names this many of a kind before "…" (the model plugin registers every timm model)."""


def _registrations(kind: str, names: list[str], show_all: bool) -> str:
    """``kind: a, b, c``, or for a long list its count, the first names and where to see the rest."""
    if show_all or len(names) <= SHOWN_NAMES:
        return f"{kind}: {', '.join(names)}"
    return (f"{kind}: {len(names):,} ({', '.join(names[:SHOWN_NAMES])}, …; see `pxp-bench list {kind}` "
            "or --all)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@app.command()
@user_errors
def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="Folders of result JSON files (their top-level *.json).", metavar="DIR")],
    out: Annotated[Path, typer.Option(help="Folder for README.md and plots/*.png (rewritten exactly).")] = Path("leaderboard"),
    readme: Annotated[Optional[Path], typer.Option(help="Also fill the leaderboard markers of this file with the first table and its plot.")] = None,
    rates: Annotated[Optional[str], typer.Option(help="Only results on this grid; the others are kept out. Default: every grid, a table per grid.")] = None,
) -> None:
    """Write markdown tables of A_PR with 95 % intervals per dataset, model, components and grid, with
    accuracy-vs-sparsity plots, from the records that agree with themselves (curve from outcomes, metrics
    from curve, samples from seed); every JSON file left out is named with the reason."""
    from pxp_bench.leaderboard import collect_results, write_leaderboard
    from pxp_bench.rates import parse_rates

    collection = collect_results(results, rates=parse_rates(rates) if rates is not None else None)
    for entry in collection.kept_out:
        show_warning(f"kept out {entry.path}: {entry.reason}", UserWarning, "", 0)
    report = write_leaderboard(collection, out, readme=readme)
    counts = ", ".join(_count(n, noun) for n, noun in ((report.tables, "table"), (report.rows, "row"),
                                                       (len(report.plots), "plot")))
    updated = f"; filled the markers of {report.readme}" if report.readme else ""
    console.print(f"wrote [bold]{report.markdown}[/]: {counts}; {_count(len(report.kept_out), 'file')} kept "
                  f"out{updated}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def plot(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files whose curves to overlay.", metavar="RESULT")],
    out: Annotated[Path, typer.Option(help="The PNG to write.")] = Path("curve.png"),
) -> None:
    """Overlay the accuracy-vs-sparsity curves of result files in one PNG."""
    from pxp_bench.leaderboard import plot_result_files

    console.print(f"wrote [bold]{plot_result_files(results, out)}[/]", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def compare(
    first: Annotated[Path, typer.Argument(help="A result JSON file, or a folder of one method's results (one per seed).", metavar="A")],
    second: Annotated[Path, typer.Argument(help="The result(s) to compare A with, on the same seeds and samples.", metavar="B")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Paired comparison of two results: A_PR of each, the difference A - B with its 95 % interval (a
    hierarchical bootstrap over seeds and class-stratified evaluation samples) and the probability that A
    keeps a random evaluation sample correct at more rates than B."""
    from pxp_bench.verdicts.compare import compare_sides, comparison_json, read_side

    sides = read_side(first), read_side(second)
    for entry in (entry for side in sides for entry in side.kept_out):
        show_warning(f"kept out {entry.path}: {entry.reason}", UserWarning, "", 0)
    found = compare_sides(*sides)
    if as_json:
        print(json.dumps(comparison_json(found), indent=2))
        return
    table = Table(title=f"paired over seeds {', '.join(map(str, found.seeds))} ({found.samples} evaluation samples)")
    for column in ("", "result", "A_PR (95 % CI)"):
        table.add_column(column)
    for name, side, estimate in (("A", found.first, found.a_pr[0]), ("B", found.second, found.a_pr[1])):
        table.add_row(name, escape(f"{side.label}\n{side.source}"),
                      f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]")
    console.print(table)
    difference, improvement = found.difference, found.improvement
    console.print(f"A_PR difference A - B: {difference.value:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]\n"
                  f"P(A improves on B): {improvement.value:.3f} [{improvement.low:.3f}, {improvement.high:.3f}] "
                  "(0.5 = no difference)\n"
                  f"Verdict: {found.verdict}", highlight=False, soft_wrap=True)


app.command("verify")(verify)


@zoo_app.command("train")
@user_errors
def zoo_train(
    model: Annotated[str, typer.Argument(help="Zoo model name, e.g. digits-vgg or tiny-llama.")],
    out: Annotated[Path, typer.Option(help="Folder for MODEL.safetensors and its manifest MODEL.json.")],
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the model's, 30 or 40).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of tiny-llama (default 2000).")] = None,
    seed: Annotated[int, typer.Option(help="Training seed (0 to 4294967295).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace MODEL.safetensors and MODEL.json if --out has them.")] = False,
) -> None:
    """Train a zoo model (digits' train split; tiny-llama: the generated corpus' train split), reproducibly,
    and write checkpoint + manifest."""
    from rich.progress import Progress

    from pxp_bench.lm.embedded import DEFAULT_STEPS, EMBEDDED_LM, train_embedded_lm
    from pxp_bench.models.training import DEFAULT_EPOCHS, train_zoo_model

    if model == EMBEDDED_LM:
        if epochs is not None:
            raise ConfigError(f"{model} trains in steps: pass --steps, not --epochs.")
        steps = DEFAULT_STEPS if steps is None else steps
        command = f"pxp-bench zoo train {model} --out {out} --steps {steps} --seed {seed}"
        with Progress(console=err_console) as bars:
            task = bars.add_task(f"training {model}", total=steps)
            trained = train_embedded_lm(out, steps=steps, seed=seed, command=command, force=force,
                                        on_step=lambda step, loss: bars.update(task, completed=step))
        console.print(f"eval next-token accuracy {trained.eval_accuracy:.4f}; wrote {trained.checkpoint} "
                      f"(sha256 {trained.sha256[:12]}...) and {trained.manifest}", highlight=False)
        return
    if steps is not None:
        raise ConfigError(f"{model} trains in epochs: pass --epochs, not --steps.")
    epochs = DEFAULT_EPOCHS.get(model, 30) if epochs is None else epochs
    command = f"pxp-bench zoo train {model} --out {out} --epochs {epochs} --seed {seed}"
    with Progress(console=err_console) as bars:
        task = bars.add_task(f"training {model}", total=epochs)
        trained = train_zoo_model(model, out, epochs=epochs, seed=seed, command=command, force=force,
                                  on_epoch=lambda epoch, loss: bars.update(task, completed=epoch))
    console.print(f"eval accuracy {trained.eval_accuracy:.4f}; wrote {trained.checkpoint} "
                  f"(sha256 {trained.sha256[:12]}...) and {trained.manifest}", highlight=False)


_commands_before: list[int] = []


def _note_commands(_plugin: str) -> typer.Typer:
    """The app, for a plugin's ``register_commands``; remembers what it held before."""
    _commands_before[:] = [len(app.registered_commands), len(app.registered_groups)]
    return app


def _withdraw_commands(_plugin: str) -> None:
    """A plugin failed in ``register_commands``: drop the commands it added before raising."""
    del app.registered_commands[_commands_before[0]:], app.registered_groups[_commands_before[1]:]


def main() -> None:
    """Console-script entry point: loads plugin commands (failed plugins have none), then runs the app."""
    from pxp_bench.plugins import get_plugins

    warnings.showwarning = show_warning  # before loading plugins, which may warn
    try:
        get_plugins().call_each("register_commands", "app", _note_commands, on_failure=_withdraw_commands)
    except PxpBenchError as exc:
        print_error(str(exc))
        raise SystemExit(2) from None
    try:
        app()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # said what is kept and cleaned up: nothing in the shutdown may hold the process
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        raise


if __name__ == "__main__":
    main()
