"""``pxp-bench run`` and ``pxp-bench export``: score, prune, measure and render a curve; export a slimmed model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from pxp_bench.cli.common import (AmpOption, BatchSizeOption, ComponentsOption, DataOption, DatasetOption,
                                  DeviceOption, EncodingOption, ImageSizeOption, MaxLayerRateOption, ModelOption,
                                  RatesOption, RecoverOption, RecoverStepsOption, RefPerClassOption, RemovalOption,
                                  RichProgress, ScheduleOption, ScopeOption, WeightsOption, console, err_console,
                                  parse_classes, user_errors)
from pxp_bench.collapse import layer_collapse
from pxp_bench.errors import ConfigError
from pxp_bench.cli.interrupts import command_guard, guarded_command
from pxp_bench.rates import DEFAULT_GRID

if TYPE_CHECKING:
    from pxp_bench.results import Result

# Options of `run` alone; those `run` and `optimize` share are in common.py.
EvaluateOption = Annotated[str, typer.Option(help="slim: each rate on a physically slimmed copy where the model allows (same accuracy, plus parameters, FLOPs, latency); masked: mask the original.")]
LatencyOption = Annotated[int, typer.Option(help="The fewest timed forward passes per latency (slim; at batch 1 and the evaluation batch, after a warm-up; median and IQR): at least 5, or 0 for no latency.")]


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
    removal: RemovalOption = "zero",
    recover: RecoverOption = "none",
    recover_steps: RecoverStepsOption = None,
    schedule: ScheduleOption = "oneshot",
    scope: ScopeOption = "global",
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
    plot: Annotated[bool, typer.Option("--plot", help="Also draw the curve as a PNG beside the JSON result (same name, .png) and its layer profile, the fraction of each layer pruned per rate (.profile.png).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Let --to replace an existing .pt2 and its .json sidecar.")] = False,
) -> None:
    """Score components, prune the least relevant globally at each rate, and measure top-1 accuracy.

    `pxp-bench export` runs the same and writes the slimmed model of one rate (--to FILE.pt2).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pxp_bench.benchmark import run_prepared
    from pxp_bench.plan import Benchmark, plan_benchmark
    from pxp_bench.prepare import prepare
    from pxp_bench.params import parse_param_pairs, read_params_file
    from pxp_bench.rates import parse_rates
    from pxp_bench.results import ensure_writable_dir, write_result
    from pxp_bench.agreement import ABLATION_CACHE, check_ablation_cache

    bench = Benchmark(
        model=model, method=method, dataset=dataset, data_root=data, components=components,
        weights=weights, rates=parse_rates(rates), n_classes=parse_classes(classes),
        ref_per_class=ref_per_class, tune_per_class=tune_per_class, seed=seed, device=device,
        batch_size=batch_size, preset=preset, image_size=image_size, amp=amp, evaluate=evaluate,
        latency_repeats=latency_repeats, params=read_params_file(params) if params else {},
        param_texts=parse_param_pairs(param or []), scores_file=scores, max_layer_rate=max_layer_rate,
        agreement=agreement, ablation_cache=out / ABLATION_CACHE if agreement else None, encoding=encoding,
        removal=removal, recover=recover, recover_steps=recover_steps, schedule=schedule, scope=scope,
    )
    exporting = ctx.info_name == "export" or to is not None
    if ctx.info_name == "export" and to is None:
        raise ConfigError("export needs --to FILE.pt2: where to write the slimmed model.")
    if at != "top-pr":
        raise ConfigError(f"--at must be top-pr, got '{at}'; for another rate use --rate R.")
    if rate is not None and not exporting:
        raise ConfigError("--rate chooses the rate to export; add --to FILE.pt2 (or use `pxp-bench export`).")
    if exporting and (recover != "none" or removal != "zero"):
        raise ConfigError("export writes the one-shot, zero-removal slimmed model; it cannot carry a recovery or mean "
                          "removal yet. Drop --recover / --removal for the export, or drop --to.")
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
        from pxp_bench.leaderboard import curves_png, profile_png, write_png

        record = result.to_dict()
        console.print(f"curve plot written to [bold]{write_png(written.with_suffix('.png'), curves_png([record]))}[/]",
                      highlight=False, soft_wrap=True)
        profile = write_png(written.with_name(f"{written.stem}.profile.png"), profile_png([record]))
        console.print(f"layer profile written to [bold]{profile}[/]", highlight=False, soft_wrap=True)
    if exporting:
        from pxp_bench.slim.export import export_result

        info, sidecar = export_result(prepared, result, to, rate, force=force)
        console.print(f"exported the slimmed model at rate {sidecar['rate']:g} ({sidecar['parameters']:,} parameters, "
                      f"top-1 {sidecar['accuracy']:.4f}) to [bold]{to}[/] and [bold]{info}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `run` and `export` (the same function) to the app."""
    app.command()(run)
    app.command("export", help="Run as `run` does, then export the slimmed model of one rate (--to FILE.pt2, "
                               "--rate R or --at top-pr) with a JSON sidecar; it loads with torch.export.load alone.")(run)
