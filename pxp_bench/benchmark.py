"""One standardized prune-and-evaluate run: a `Benchmark` spec in, a `Result` out.

Data flow: registries resolve the names -> dataset and model -> the protocol's draws -> component
discovery -> ``method.score`` -> global ranking -> the pruning curve -> metrics -> `Result`. Every step
is a plain function; the CLI only parses options and renders.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import torch
from torch.utils.data import DataLoader, Subset

from pxp_bench.attribution.reference import ReferenceSet
from pxp_bench.components import discover_components
from pxp_bench.data.protocol import draw_sets, index_hash, seed_streams
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.device import device_name, resolve_device
from pxp_bench.errors import ComponentError, ConfigError, DataError, PluginError, PxpBenchError
from pxp_bench.evaluate import curve_metrics, prune_curve
from pxp_bench.masking import check_scores, rank_components
from pxp_bench.params import DEFAULT_PRESET, resolve_params
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.rates import DEFAULT_RATES, check_grid_fits, normalise_rates
from pxp_bench.results import Result, environment
from pxp_bench.scores import load_scores
from pxp_bench.specs import COMPONENT_KINDS, DEFAULT_COMPONENTS, DatasetSpec, MethodSpec, ModelSpec

METHOD_PREFERENCE = ("lrp", "magnitude")
"""``--method`` default: the first of these that is registered and fits the model and components."""


class Progress(Protocol):
    """Receives progress of the long stages (``scoring`` in samples, ``evaluating`` in rates)."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...

    def finish(self, stage: str) -> None: ...


@dataclass
class Benchmark:
    """Everything that defines a run; names are resolved through the plugin registries."""

    model: str = "digits-vgg"
    method: str | None = None
    dataset: str | None = None
    data_root: Path | None = None
    components: str | None = None
    weights: str | None = None
    rates: tuple[float, ...] = DEFAULT_RATES
    n_classes: int | None = None
    ref_per_class: int = 10
    tune_per_class: int = 0
    seed: int = 0
    device: str = "auto"
    batch_size: int = 128
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Typed parameter values (e.g. from a ``--params`` JSON file)."""
    param_texts: dict[str, str] = field(default_factory=dict)
    """``key=value`` texts, typed by the method's declared space."""
    scores_file: Path | None = None
    """Saved scores to evaluate instead of scoring (their method, variant and params are recorded)."""
    image_size: int | None = None
    """Input size for models that accept one (random-weight ViTs, any CNN's preprocessing)."""
    amp: str | None = None
    """Autocast dtype for evaluation: None, ``bf16`` or ``fp16``."""


@dataclass
class Plan:
    """A `Benchmark` with every name resolved and every parameter typed, before any heavy work."""

    model: ModelSpec
    dataset: DatasetSpec
    method: MethodSpec
    method_owner: str
    components: str
    params: dict[str, Any]
    variant: str


def _default_method(plugins: Plugins, family: str, components: str) -> str:
    for name in METHOD_PREFERENCE:
        if name in plugins.methods:
            spec = plugins.methods.get(name)
            if family in spec.families and components in spec.components:
                return name
    raise ConfigError(f"no default method fits a {family} with {components}; pass --method.")


def _refuse_other_family_params(method: MethodSpec, model: ModelSpec, given: dict[str, Any]) -> None:
    space = method.space_for(model.family)
    for key in given:
        other = [family for family, extra in method.family_params.items() if key in extra and family != model.family]
        if key not in space and other:
            raise ConfigError(
                f"parameter '{key}' of method '{method.name}' exists only for {' and '.join(other)} models; "
                f"'{model.name}' is a {model.family}. Drop --param {key}."
            )


def plan_benchmark(bench: Benchmark, plugins: Plugins | None = None) -> Plan:
    """Resolve names and parameters; raises a `PxpBenchError` naming the first problem."""
    plugins = plugins or get_plugins()
    model = plugins.models.get(bench.model)
    dataset_name = bench.dataset or model.default_dataset
    if dataset_name is None:
        raise ConfigError(f"model '{model.name}' has no default dataset; pass --dataset (and --data PATH).")
    dataset = plugins.datasets.get(dataset_name)
    components = bench.components or DEFAULT_COMPONENTS.get(model.family, "filters")
    if components not in COMPONENT_KINDS:
        raise ConfigError(
            f"unknown components '{components}'; choose one of {', '.join(COMPONENT_KINDS)}."
        )
    method = plugins.methods.get(bench.method or _default_method(plugins, model.family, components))
    if components not in method.components:
        raise ConfigError(
            f"method '{method.name}' cannot score {components}; it supports "
            f"{', '.join(sorted(method.components))}."
        )
    if model.family not in method.families:
        raise ConfigError(f"method '{method.name}' does not support {model.family} models.")
    preset_name = bench.preset or DEFAULT_PRESET
    if preset_name != DEFAULT_PRESET and preset_name not in method.presets:
        raise ConfigError(
            f"method '{method.name}' has no preset '{preset_name}'; presets: {', '.join(method.preset_names())}."
        )
    owner = f"method '{method.name}'"
    _refuse_other_family_params(method, model, {**bench.params, **bench.param_texts})
    params = resolve_params(method.space_for(model.family), owner=owner, preset=method.presets.get(preset_name),
                            values=bench.params, texts=bench.param_texts)
    variant = "custom" if bench.params or bench.param_texts else preset_name
    return Plan(model, dataset, method, plugins.methods.owner(method.name), components, params, variant)


def _check_types(bench: Benchmark) -> None:
    """Python API callers get the same one-line errors as the command line, not a TypeError later."""
    for name in ("ref_per_class", "tune_per_class", "seed", "batch_size"):
        value = getattr(bench, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}.")
    n_classes = bench.n_classes
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int)):
        raise ConfigError(f"n_classes must be an integer or None (all classes), got {n_classes!r}.")
    if n_classes is not None and n_classes < 2:
        raise ConfigError(f"--classes {n_classes}: at least 2 classes are needed; with one class every metric "
                          "is trivially 1.0.")


def _check_options(bench: Benchmark, dataset: DatasetSpec) -> None:
    if bench.amp not in (None, "bf16", "fp16"):
        raise ConfigError(f"--amp must be bf16 or fp16, got '{bench.amp}'.")
    if bench.image_size is not None and not 16 <= bench.image_size <= 4096:
        raise ConfigError(f"--image-size must be between 16 and 4096 pixels, got {bench.image_size}.")
    if bench.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {bench.batch_size}.")
    if bench.seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {bench.seed}.")
    if bench.scores_file is not None and (bench.preset or bench.params or bench.param_texts):
        raise ConfigError("--scores evaluates saved scores: --preset, --params and --param do not apply.")
    if dataset.needs_root and bench.data_root is None:
        raise ConfigError(f"dataset '{dataset.name}' needs its files: pass --data PATH (a folder with "
                          "train/ and val/, one sub-folder per class), or choose another --dataset.")
    if not dataset.needs_root and bench.data_root is not None:
        raise ConfigError(f"dataset '{dataset.name}' is embedded and takes no --data; drop it.")
    if bench.data_root is not None and not Path(bench.data_root).exists():
        raise DataError(f"data root {bench.data_root} does not exist.")


def _check_fit(model_name: str, loaded, dataset_name: str, splits) -> None:
    if tuple(splits.input_shape) != tuple(loaded.input_shape):
        raise DataError(
            f"dataset '{dataset_name}' gives inputs of shape {tuple(splits.input_shape)}, but model "
            f"'{model_name}' expects {tuple(loaded.input_shape)}. Choose a matching model or dataset."
        )
    if splits.num_classes != loaded.num_classes:
        raise DataError(
            f"dataset '{dataset_name}' has {splits.num_classes} classes, but model '{model_name}' has "
            f"{loaded.num_classes} outputs. Use weights trained on this dataset, or --weights none for a "
            f"randomly initialised model sized to it."
        )


def _score(plan: Plan, plugins: Plugins, model, components, reference) -> dict[str, torch.Tensor]:
    """The method's scores, checked against the components; a plugin's failure names the plugin."""
    score = plan.method.load_score()
    info = plugins.infos[plan.method_owner]
    try:
        scores = score(model, components, reference, **plan.params)
        check_scores(components, scores)
        return scores
    except (PxpBenchError, torch.cuda.OutOfMemoryError) as exc:
        if info.source == "builtin" or not isinstance(exc, ComponentError):
            raise
        raise PluginError(f"method '{plan.method.name}' from plugin '{info.name}' ({info.distribution} "
                          f"{info.version}) returned unusable scores: {exc}") from None
    except Exception as exc:
        if info.source == "builtin":
            raise
        raise PluginError(
            f"method '{plan.method.name}' from plugin '{info.name}' ({info.distribution} {info.version}) "
            f"failed while scoring: {type(exc).__name__}: {exc}."
        ) from exc


T = TypeVar("T")


def with_oom_backoff(stage: str, batch_size: int, work: Callable[[int], T]) -> T:
    """Run ``work(batch_size)``; on CUDA out-of-memory halve the batch once (with a warning), then fail
    with a clear message."""
    try:
        return work(batch_size)
    except torch.cuda.OutOfMemoryError:
        smaller = max(1, batch_size // 2)
        torch.cuda.empty_cache()
        warnings.warn(f"CUDA ran out of memory while {stage} at batch size {batch_size}; retrying at {smaller}.",
                      stacklevel=2)
        try:
            return work(smaller)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise ConfigError(
                f"CUDA ran out of memory while {stage}, also at batch size {smaller}. Lower --batch-size, "
                "evaluate with --amp bf16, or choose a smaller --image-size."
            ) from None


def _loader(dataset, batch_size: int, device: torch.device) -> DataLoader:
    """Tensors in memory load fastest in the main process; decoded images use worker processes."""
    in_memory = isinstance(getattr(dataset, "dataset", dataset), LabelledTensors)
    workers = 0 if in_memory else min(4, os.cpu_count() or 1)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda")


def _load(plan: Plan, bench: Benchmark):
    splits = plan.dataset.load_splits()(plan.dataset.name, bench.data_root)
    loaded = plan.model.load_build()(plan.model.name, weights=bench.weights, num_classes=splits.num_classes,
                                     image_size=bench.image_size)
    splits.use_transform(loaded.transform)
    _check_fit(plan.model.name, loaded, plan.dataset.name, splits)
    return splits, loaded


def run_benchmark(bench: Benchmark, *, plugins: Plugins | None = None, progress: Progress | None = None) -> Result:
    """Run one benchmark end to end and return its `Result` (not yet written to disk)."""
    plugins = plugins or get_plugins()
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings[stage] = round(now - since, 4)
        return now

    _check_types(bench)
    plan = plan_benchmark(bench, plugins)
    _check_options(bench, plan.dataset)
    rates = normalise_rates(bench.rates)
    device = resolve_device(bench.device)
    clock = time.perf_counter()
    splits, loaded = _load(plan, bench)
    clock = lap("load", clock)
    sets = draw_sets(splits, n_classes=bench.n_classes, ref_per_class=bench.ref_per_class,
                     tune_per_class=bench.tune_per_class, seed=bench.seed)

    model = loaded.module.to(device).eval()
    reference_data = Subset(splits.train, sets.reference)
    example = reference_data[0][0].unsqueeze(0).to(device)
    components = discover_components(model, plan.components, example)
    check_grid_fits(rates, components.total)
    clock = lap("discover", clock)
    diagnostics: dict[str, Any] = {"excluded_attention": list(components.excluded)}

    method_record = {"method": plan.method.name, "variant": plan.variant, "params": plan.params}
    if bench.scores_file is not None:
        saved = load_scores(bench.scores_file, components)
        if bench.method is not None and bench.method != saved.metadata.get("method"):
            raise ConfigError(
                f"--scores {bench.scores_file} holds '{saved.metadata.get('method')}' scores, not "
                f"'{bench.method}'; drop --method or rescore."
            )
        for key, ours in (("model", plan.model.name), ("weights", loaded.weights), ("classes", sets.classes)):
            if saved.metadata.get(key) != ours:
                raise ConfigError(
                    f"--scores {bench.scores_file} was saved for {key} {saved.metadata.get(key)!r}, this run has "
                    f"{ours!r}. Use the same --model, --weights, --classes and --seed, or rescore."
                )
        scores = saved.scores
        method_record = {key: saved.metadata.get(key) for key in method_record}
    else:
        streams = seed_streams(bench.seed)
        random_seed, sampler_seed = (int(streams[name].integers(2**63 - 1)) for name in ("random_baseline", "sampler"))

        def score_at(batch_size: int) -> dict[str, torch.Tensor]:
            reference = ReferenceSet(reference_data, sets.classes, batch_size, device, random_seed, sampler_seed)
            if progress is not None:
                progress.start("scoring", len(reference))
                reference.on_batch = lambda n: progress.advance("scoring", n)
            scored = _score(plan, plugins, model, components, reference)
            diagnostics.update(reference.diagnostics)
            if progress is not None:
                progress.finish("scoring")  # data-free methods never ask for a batch
            return scored

        scores = with_oom_backoff("scoring", bench.batch_size, score_at)
    order = rank_components(components, scores)
    clock = lap("score", clock)

    evaluation = Subset(splits.eval, sets.evaluation)

    def curve_at(batch_size: int):
        if progress is not None:
            progress.start("evaluating", len(rates))
        return prune_curve(model, components, order, rates, _loader(evaluation, batch_size, device),
                           sets.classes, device, amp=bench.amp,
                           on_rate=(lambda _: progress.advance("evaluating")) if progress else None)

    points = with_oom_backoff("evaluating", bench.batch_size, curve_at)
    lap("evaluate", clock)
    timings["total"] = round(time.perf_counter() - started, 4)

    return Result(
        **method_record,
        model=plan.model.name,
        dataset=plan.dataset.name,
        components=plan.components,
        seed=bench.seed,
        classes=sets.classes,
        rates=[p.rate for p in points],
        curve=[{"rate": p.rate, "pruned": p.pruned, "correct": p.correct, "accuracy": p.accuracy} for p in points],
        metrics=curve_metrics([p.rate for p in points], [p.correct for p in points], len(sets.evaluation)),
        layers={g.name: [p.layers[g.name] for p in points] for g in components.groups},
        timings=timings,
        environment=environment(device_name(device)),
        weights=loaded.weights,
        samples={
            "class_names": [splits.class_names[c] for c in sets.classes],
            "class_hash": index_hash(sets.classes),
            "reference": len(sets.reference),
            "reference_hash": index_hash(sets.reference),
            "tuning": len(sets.tuning),
            "tuning_split": sets.tuning_split,
            "tuning_hash": index_hash(sets.tuning),
            "evaluation": len(sets.evaluation),
            "evaluation_hash": index_hash(sets.evaluation),
            "components": components.total,
            "amp": bench.amp,
            "image_size": bench.image_size,
        },
        diagnostics=diagnostics,
        scores_source=str(bench.scores_file) if bench.scores_file is not None else None,
        scores=scores,
        scored=components,
    )
