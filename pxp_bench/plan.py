"""What defines a run (`Benchmark`) and its resolution into a `Plan`: names through the registries,
parameters typed by the method's space, every option checked before any heavy work."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pxp_bench.conditions import check_choices
from pxp_bench.errors import ConfigError, DataError
from pxp_bench.params import DEFAULT_PRESET, resolve_params
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.seeds import check_seed
from pxp_bench.specs import (COMPONENT_KINDS, DEFAULT_COMPONENTS, LANGUAGE_MODELLING, DatasetSpec, MethodSpec,
                             ModelSpec)

EVALUATE_MODES = ("slim", "masked")
"""``slim``: each rate on a physically slimmed copy (`pxp_bench.slim`); ``masked``: the original, masked."""

MIN_LATENCY_REPEATS = 5
"""The fewest timed passes a latency takes (``--latency-repeats``' default): a median and an interquartile range."""

def file_safe_model(model: str) -> str:
    """``model`` as file and study names made from it hold it: each run of characters other than letters,
    digits and ``_ . + = , @ -`` becomes ``-`` (``hf:ORG/NAME`` -> ``hf-ORG-NAME``, never a path)."""
    return re.sub(r"[^A-Za-z0-9_.+=,@-]+", "-", model)


METHOD_PREFERENCE = ("lrp", "magnitude")
"""``--method`` default: the first of these that is registered and fits the model and components."""


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
    variant: str | None = None
    """The name results give these parameters (e.g. ``optimised`` for a study's best); default: the
    preset's name, or ``custom`` for given parameters."""
    scores_file: Path | None = None
    """Saved scores to evaluate instead of scoring (their method, variant and params are recorded)."""
    image_size: int | None = None
    """Input size for models that accept one (random-weight ViTs, any CNN's preprocessing)."""
    amp: str | None = None
    """Autocast dtype for evaluation: None, ``bf16`` or ``fp16``."""
    evaluate: str = "slim"
    """``slim``: evaluate each rate on a physically slimmed copy where the model allows it (the same
    counts as masking, plus parameters, FLOPs and latency); ``masked``: mask the original model."""
    latency_repeats: int = MIN_LATENCY_REPEATS
    """The fewest timed forward passes of each latency per rate, at batch 1 and at the evaluation batch
    (slim evaluation; `pxp_bench.slim.efficiency`); 0: no latency."""
    max_layer_rate: float | None = None
    """At most this fraction of any layer is pruned (Torch-Pruning's max pruning ratio per layer): the
    global ranking skips a layer's components once it reaches the cap. None: no cap (the paper's protocol)."""
    agreement: bool = False
    """Also score the reference set by ablation and record the method's agreement with it
    (`pxp_bench.agreement`)."""
    ablation_cache: Path | None = None
    """Where ablation scores are kept per setting for ``agreement`` (None: computed for this run only)."""
    encoding: str | None = None
    """How a dataset read from text files decodes them (``--encoding``; None: the dataset's default, UTF-8)."""
    removal: str = "zero"
    """How a pruned component is removed (`pxp_bench.conditions`): ``zero``, or ``mean`` (its mean output over
    the reference samples)."""
    recover: str = "none"
    """What follows pruning at each rate: ``none``, ``bn`` (BatchNorm statistics re-estimated) or ``finetune``."""
    recover_steps: int | None = None
    """Fine-tuning steps per rate with ``recover="finetune"`` (None: `pxp_bench.conditions.DEFAULT_RECOVER_STEPS`)."""
    schedule: str = "oneshot"
    """``oneshot`` (one scoring) or ``iterative`` (re-scored on the pruned model at every rate, sets nested)."""
    scope: str = "global"
    """``global`` (the least relevant of the whole model) or ``layer`` (the same fraction of every layer)."""


RECORDED_APART = frozenset({"model", "method", "dataset", "components", "rates", "seed", "preset", "params",
                            "param_texts", "variant", "scores_file", "ablation_cache"})
"""`Benchmark` fields a record holds in fields of their own (resolved: the parameters as typed, the variant),
or that do not change what a run measures (where the ablation cache lives)."""


def run_options(bench: Benchmark) -> dict[str, Any]:
    """The options of ``bench`` that a record keeps in ``options`` (`RECORDED_APART` aside), as JSON values:
    with the record's own fields, what `pxp-bench verify` reruns."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        return list(value) if isinstance(value, tuple) else value

    return {f.name: plain(getattr(bench, f.name)) for f in fields(Benchmark) if f.name not in RECORDED_APART}


@dataclass
class Plan:
    """A `Benchmark` with every name resolved and every parameter typed, before any heavy work."""

    model: ModelSpec
    dataset: DatasetSpec
    method: MethodSpec
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


def resolve_model_and_dataset(bench: Benchmark, plugins: Plugins) -> tuple[ModelSpec, DatasetSpec]:
    """The model's and the dataset's specs, each named as asked (a family of names keeps the given name)."""
    model = plugins.models.get(bench.model)
    if model.name != bench.model:  # a family of names (hf:ORG/NAME): the spec, named as asked
        model = replace(model, name=bench.model)
    dataset_name = bench.dataset or model.default_dataset
    if dataset_name is None:
        raise ConfigError(f"model '{model.name}' has no default dataset; pass --dataset (and --data PATH).")
    dataset = plugins.datasets.get(dataset_name)
    if dataset.name != dataset_name:  # a family of names (hf:ORG/NAME), as for models
        dataset = replace(dataset, name=dataset_name)
    return model, dataset


def plan_benchmark(bench: Benchmark, plugins: Plugins | None = None) -> Plan:
    """Resolve names and parameters; raises a `PxpBenchError` naming the first problem."""
    plugins = plugins or get_plugins()
    model, dataset = resolve_model_and_dataset(bench, plugins)
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
    variant = bench.variant or ("custom" if bench.params or bench.param_texts else preset_name)
    return Plan(model, dataset, method, components, params, variant)


def check_types(bench: Benchmark) -> None:
    """Python API callers get the same one-line errors as the command line, not a TypeError later."""
    for name in ("ref_per_class", "tune_per_class", "seed", "batch_size", "latency_repeats"):
        value = getattr(bench, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}.")
    n_classes = bench.n_classes
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int)):
        raise ConfigError(f"n_classes must be an integer or None (all classes), got {n_classes!r}.")


def check_max_layer_rate(value: float | None) -> None:
    """A per-layer cap must leave something to prune and something to keep: 0 < R < 1 (or None)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"--max-layer-rate must lie strictly between 0 and 1 (e.g. 0.9 keeps at least 10 % of every "
                          f"layer), got {value!r}; leave it out for no cap.")


MIN_SEQUENCE_LENGTH = 2
"""The shortest ``--seq-len``: one token to read, one to predict (the longest is the model's context)."""


def check_encoding(encoding: str | None, dataset: DatasetSpec) -> None:
    """``--encoding`` names a text codec and the dataset reads text files (its loader takes ``encoding``)."""
    if encoding is None:
        return
    from pxp_bench.lm.data import check_encoding as check_codec

    check_codec(encoding)
    if "encoding" not in inspect.signature(dataset.load_splits()).parameters:
        raise ConfigError(f"--encoding applies to datasets read from text files (--dataset text); dataset "
                          f"'{dataset.name}' does not take it. Drop --encoding.")


def check_options(bench: Benchmark, dataset: DatasetSpec, model: ModelSpec | None = None) -> None:
    """Every option's range; ``model`` (when given) tells a language model's --seq-len from an --image-size."""
    if bench.amp not in (None, "bf16", "fp16"):
        raise ConfigError(f"--amp must be bf16 or fp16, got '{bench.amp}'.")
    if model is not None and model.task == LANGUAGE_MODELLING:
        if bench.image_size is not None and bench.image_size < MIN_SEQUENCE_LENGTH:  # the most: the model's context
            raise ConfigError(f"--seq-len must be at least {MIN_SEQUENCE_LENGTH} tokens (one to read, one to predict), "
                              f"got {bench.image_size}.")
    elif bench.image_size is not None and not 16 <= bench.image_size <= 4096:
        raise ConfigError(f"--image-size must be between 16 and 4096 pixels, got {bench.image_size}.")
    check_encoding(bench.encoding, dataset)
    if bench.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {bench.batch_size}.")
    if bench.evaluate not in EVALUATE_MODES:
        raise ConfigError(f"--evaluate must be slim or masked, got '{bench.evaluate}'.")
    if bench.latency_repeats < 0 or 0 < bench.latency_repeats < MIN_LATENCY_REPEATS:
        raise ConfigError(f"--latency-repeats must be at least {MIN_LATENCY_REPEATS} (timed passes for a median and "
                          f"an interquartile range) or 0 to skip timing, got {bench.latency_repeats}.")
    check_seed(bench.seed)
    check_max_layer_rate(bench.max_layer_rate)
    check_choices(bench.removal, bench.recover, bench.schedule, bench.scope, bench.recover_steps)
    if bench.scores_file is not None and bench.schedule == "iterative":
        raise ConfigError("--schedule iterative scores the pruned model again at every rate; saved --scores cannot be "
                          "rescored. Drop --scores (score in this run), or use --schedule oneshot.")
    if bench.scores_file is not None and (bench.preset or bench.params or bench.param_texts):
        raise ConfigError("--scores evaluates saved scores: --preset, --params and --param do not apply.")
    if dataset.needs_root and bench.data_root is None:
        raise ConfigError(f"dataset '{dataset.name}' needs its files: pass --data PATH ({dataset.summary}), or "
                          "choose another --dataset.")
    if not dataset.needs_root and bench.data_root is not None:
        raise ConfigError(f"dataset '{dataset.name}' takes no --data (it is embedded, or its name says where it "
                          "is); drop --data.")
    if bench.data_root is not None and not Path(bench.data_root).exists():
        raise DataError(f"data root {bench.data_root} does not exist.")
