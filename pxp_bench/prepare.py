"""The run's first stage, once per seed: the plan resolved, dataset and model loaded and checked to fit
each other, the protocol's sample sets drawn, the components found (`prepare` -> `Prepared`). Scoring,
evaluation (`pxp_bench.benchmark`), the agreement with ablation (`pxp_bench.agreement`) and a study's trials
(`pxp_bench.optimize`) all start from a `Prepared`; this module imports none of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch.utils.data import Dataset, Subset

from pxp_bench.batch_size import batch_size_for
from pxp_bench.components import Components, discover_components
from pxp_bench.conditions import condition_of
from pxp_bench.data.loading import decoded_once, decoded_size, loader, memory_budget
from pxp_bench.data.protocol import ProtocolSets
from pxp_bench.device import channels_last_suits, resolve_device
from pxp_bench.errors import ConfigError, DataError
from pxp_bench.evaluate import EvaluationMemo
from pxp_bench.guards import check_items, check_readable
from pxp_bench.plan import Benchmark, Plan, check_options, check_types, plan_benchmark
from pxp_bench.plugins import Plugins, get_plugins, plugin_culprit
from pxp_bench.rates import check_grid_fits, check_grid_prunes, check_layer_grid_prunes, normalise_rates
from pxp_bench.recovery import check_recovery, needed_samples, recovery_indices
from pxp_bench.removal import site_means
from pxp_bench.specs import CLASSIFICATION, LANGUAGE_MODELLING, DatasetSpec, DatasetSplits, LoadedModel, ModelSpec
from pxp_bench.tasks.base import Task
from pxp_bench.tasks.classification import CLASSIFICATION_TASK


@dataclass
class Prepared:
    """What a run computes once per seed before scoring; a study reuses it for every trial."""

    bench: Benchmark
    plan: Plan
    plugins: Plugins
    device: torch.device
    rates: tuple[float, ...]
    splits: DatasetSplits
    loaded: LoadedModel
    sets: ProtocolSets
    components: Components
    task: Task = CLASSIFICATION_TASK
    """What evaluation means for this model and dataset (`pxp_bench.tasks`)."""
    timings: dict[str, float] = field(default_factory=dict)
    memos: dict[str, EvaluationMemo] = field(default_factory=dict)
    """Per split, the evaluations of pruned sets seen so far (exact reuse)."""
    decoded: dict[str, Dataset] = field(default_factory=dict)
    """Per sample set, its samples as read once (`samples`)."""

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.module

    def samples(self, which: str) -> Dataset:
        """The ``reference``, ``eval``, ``tune`` or ``recovery`` samples, decoded into memory once where they fit
        (`pxp_bench.data.loading.decoded_once`): a curve reads its set at every rate, a study every trial."""
        if which not in self.decoded:
            budget = memory_budget() - sum(decoded_size(kept) for kept in self.decoded.values())
            self.decoded[which] = decoded_once(_sample_set(self, which), self.splits.input_shape, budget=budget)
        return self.decoded[which]

    @cached_property
    def fills(self) -> dict[str, torch.Tensor] | None:
        """Under ``--removal mean``, each site channel's mean over the reference samples on the unpruned model
        (`pxp_bench.removal`); None under zero removal."""
        if self.bench.removal != "mean":
            return None
        return site_means(self.model, self.components, loader(self.samples("reference"), self.batch_size, self.device),
                          self.device)

    @cached_property
    def recovery_sample_indices(self) -> list[int]:
        """The training samples recovery reads (`pxp_bench.recovery.recovery_indices`), as many as it needs."""
        bench = self.bench
        steps = condition_of(bench).recover_steps
        drawn = recovery_indices(self.splits.train.targets, self.sets, bench.seed)
        return drawn[:needed_samples(bench.recover, steps)]

    @cached_property
    def channels_last(self) -> bool:
        """Whether the evaluation feeds channels-last batches (`pxp_bench.device.channels_last_suits`)."""
        return channels_last_suits(self.model, example_input(self))

    @cached_property
    def batch_size(self) -> int:
        """The batch of scoring and evaluation (`pxp_bench.batch_size`), probed once: a study runs many."""
        return batch_size_for(self.model, example_input(self), self.bench.batch_size)


def _check_task(model_name: str, model_task: str, dataset_name: str, dataset_task: str) -> None:
    if dataset_task != model_task:
        task = model_task.replace("_", " ")
        raise DataError(f"model '{model_name}' is evaluated on {task}, dataset '{dataset_name}' serves "
                        f"{dataset_task.replace('_', ' ')}. Choose a {task} --dataset (`pxp-bench list datasets`).")


def _check_fit(model_name: str, loaded, dataset_name: str, splits) -> None:
    _check_task(model_name, loaded.task, dataset_name, splits.task)
    if tuple(splits.input_shape) != tuple(loaded.input_shape) and splits.task == LANGUAGE_MODELLING:
        raise DataError(f"dataset '{dataset_name}' holds sequences of {tuple(splits.input_shape)[0]} tokens, but "
                        f"model '{model_name}' reads {tuple(loaded.input_shape)[0]} (--seq-len); drop --seq-len, or "
                        "choose a dataset the model tokenizes (--dataset text).")
    if tuple(splits.input_shape) != tuple(loaded.input_shape):
        raise DataError(
            f"dataset '{dataset_name}' gives inputs of shape {tuple(splits.input_shape)}, but model "
            f"'{model_name}' expects {tuple(loaded.input_shape)}. Choose a matching model or dataset."
        )
    if splits.task == CLASSIFICATION and splits.num_classes != loaded.num_classes:
        raise DataError(
            f"dataset '{dataset_name}' has {splits.num_classes} classes, but model '{model_name}' has "
            f"{loaded.num_classes} outputs. Use weights trained on this dataset, or --weights none for a "
            f"randomly initialised model sized to it."
        )


def load_model_and_data(model: ModelSpec, dataset: DatasetSpec, bench: Benchmark,
                        plugins: Plugins) -> tuple[DatasetSplits, LoadedModel]:
    """The dataset's splits, read through the model's transform, and the model, checked to fit each other."""
    text = {} if bench.encoding is None else {"encoding": bench.encoding}  # only text datasets take it
    splits = dataset.load_splits()(dataset.name, bench.data_root, **text)
    _check_task(model.name, model.task, dataset.name, splits.task)  # before building the model
    loaded = model.load_build()(model.name, weights=bench.weights, num_classes=splits.num_classes,
                                image_size=bench.image_size)
    splits.use_transform(loaded.transform)
    check_items(splits, plugin_culprit(plugins, f"dataset '{dataset.name}'", plugins.datasets.owner(dataset.name)))
    _check_fit(model.name, loaded, dataset.name, splits)
    return splits, loaded


def prepare(bench: Benchmark, *, plugins: Plugins | None = None) -> Prepared:
    """Check and resolve ``bench``, load data and model, draw the protocol's sets, find the components."""
    plugins = plugins or get_plugins()
    check_types(bench)
    plan = plan_benchmark(bench, plugins)
    check_options(bench, plan.dataset, plan.model)
    rates = normalise_rates(bench.rates)
    device = resolve_device(bench.device)
    clock = time.perf_counter()
    splits, loaded = load_model_and_data(plan.model, plan.dataset, bench, plugins)
    load_s = time.perf_counter() - clock
    task = plugins.tasks.get(loaded.task).load()
    sets = task.draw(splits, n_classes=bench.n_classes, ref_per_class=bench.ref_per_class,
                     tune_per_class=bench.tune_per_class, seed=bench.seed)
    # the sets read after scoring; the reference set is read first thing by scoring itself
    check_readable(splits.eval, sets.evaluation)
    check_readable(splits.tune if sets.tuning_split == "tune" else splits.train, sets.tuning)
    loaded.module = loaded.module.to(device).eval()
    example = splits.train[sets.reference[0]][0].unsqueeze(0).to(device)
    components = discover_components(loaded.module, plan.components, example)
    check_grid_fits(rates, components.total)
    check_grid_prunes(rates, [group.size for group in components.groups], bench.max_layer_rate)
    if bench.scope == "layer":
        check_layer_grid_prunes(rates, [group.size for group in components.groups])
    if bench.recover != "none":
        check_recovery(bench.recover, loaded.module, loaded.task, len(recovery_indices(splits.train.targets, sets, bench.seed)))
    timings = {"load": round(load_s, 4), "discover": round(time.perf_counter() - clock - load_s, 4)}
    return Prepared(bench, plan, plugins, device, rates, splits, loaded, sets, components, task, timings)


def example_input(prepared: Prepared) -> torch.Tensor:
    """The first reference sample as a batch of one on the run's device (probe passes, tracing)."""
    return prepared.samples("reference")[0][0].unsqueeze(0).to(prepared.device)


def _sample_set(prepared: Prepared, split: str) -> Dataset:
    sets = prepared.sets
    if split == "reference":
        return Subset(prepared.splits.train, sets.reference)
    if split == "eval":
        return Subset(prepared.splits.eval, sets.evaluation)
    if split == "recovery":
        return Subset(prepared.splits.train, prepared.recovery_sample_indices)
    if split == "tune":
        if not sets.tuning:
            raise ConfigError("the tuning set is empty: pass --tune-per-class N (samples per class) to draw one.")
        source = prepared.splits.tune if sets.tuning_split == "tune" else prepared.splits.train
        return Subset(source, sets.tuning)
    raise ValueError(f"unknown sample set {split!r}")
