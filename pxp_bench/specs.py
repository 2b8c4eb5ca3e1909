"""What plugins register: the specs of methods, models, datasets and optimizers, and what they return.

This module imports no torch so that listing plugins and ``pxp-bench --help`` stay fast. Callables may
be given as ``"package.module:function"`` strings, imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pxp_bench.errors import PluginError
from pxp_bench.params import DEFAULT_PRESET, ParamSpace

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

COMPONENT_KINDS = ("filters", "neurons", "heads")
FAMILIES = ("cnn", "transformer", "lm")
"""``lm``: a decoder language model (`pxp_bench.lm`); methods support it only where they say so."""
VISION_FAMILIES = frozenset({"cnn", "transformer"})
"""What a method supports unless it declares ``families``: language models need methods that know them."""
DEFAULT_COMPONENTS = {"cnn": "filters", "transformer": "heads", "lm": "heads"}
CLASSIFICATION = "classification"
"""The task of image classifiers (`pxp_bench.tasks`), every model's and dataset's unless they say otherwise."""
LANGUAGE_MODELLING = "language_modelling"
"""The task of decoder language models (`pxp_bench.lm`)."""


def resolve_callable(ref: Callable | str, owner: str) -> Callable:
    """Return ``ref`` itself, or import it from a ``"module:attribute"`` string."""
    return ref if callable(ref) else import_reference(ref, owner)


def import_reference(ref: str, owner: str) -> Any:
    """The attribute a ``"module:attribute"`` string names."""
    module_name, _, attribute = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{owner}: cannot import '{ref}': {exc}.") from None


@dataclass(frozen=True)
class MethodSpec:
    """An attribution method.

    ``score(model, components, reference, context, **params) -> {group name: 1-D tensor}`` returns one
    score per component (higher = more relevant = pruned later), the shape of Torch-Pruning's
    importances. The arguments are described in `pxp_bench.api`; `pxp_bench.testing.check_method`
    checks a method against this contract.
    """

    name: str
    """What ``--method`` names; unique across plugins."""
    score: Callable | str
    """The score function, or a ``"module:function"`` string imported on first use."""
    summary: str
    """One line for ``pxp-bench list methods``."""
    components: frozenset[str] = frozenset(COMPONENT_KINDS)
    """The component kinds it can score (`COMPONENT_KINDS`)."""
    families: frozenset[str] = VISION_FAMILIES
    """The model families it supports (`FAMILIES`; ``lm`` only where declared)."""
    params: ParamSpace = field(default_factory=dict)
    """Its parameters: name -> ``Categorical`` / ``IntRange`` / ``FloatRange`` (``searched`` ones are optimised)."""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Named parameter values (``--preset``); ``default`` is the spaces' defaults unless given here."""
    family_params: Mapping[str, ParamSpace] = field(default_factory=dict)
    """Parameters that exist only for one model family (e.g. LRP's attention rule for transformers)."""

    def space_for(self, family: str) -> dict:
        """The parameter space on a model of ``family``."""
        return {**self.params, **self.family_params.get(family, {})}

    def load_score(self) -> Callable:
        return resolve_callable(self.score, f"method '{self.name}'")

    def preset_names(self) -> list[str]:
        return [DEFAULT_PRESET, *(name for name in self.presets if name != DEFAULT_PRESET)]


@dataclass
class LoadedModel:
    """A ready classifier and what the pipeline needs to know about it."""

    module: nn.Module
    """The classifier: ``module(batch of input_shape) -> (batch, num_classes)`` logits."""
    family: str
    """``cnn`` or ``transformer`` (`FAMILIES`): the default components and the methods' family parameters."""
    num_classes: int
    """Its outputs; must equal the dataset's class count."""
    input_shape: tuple[int, ...]
    """One input without the batch axis, e.g. ``(3, 224, 224)``; must equal the dataset's."""
    weights: str
    """Identity of the weights: ``packaged:<sha256>``, ``file:<sha256>``, ``random:seed0`` ..."""
    transform: Callable | None = None
    """Preprocessing of a PIL image into the model's input tensor, for image-folder datasets; for a language
    model its tokenizer (`pxp_bench.lm.text.TextEncoder`), which text datasets use."""
    task: str = CLASSIFICATION
    """The task it is evaluated on (`TaskSpec`); must equal the dataset's."""


@dataclass(frozen=True)
class ModelSpec:
    """An architecture. ``build(name, weights=..., num_classes=..., image_size=...) -> LoadedModel``.

    ``weights`` is None (the model's default weights), ``"none"`` (random init) or a path;
    ``num_classes`` is the dataset's class count, for models whose head is sized to the data;
    ``image_size`` is None or a requested input size. One build function may serve many names.
    """

    name: str
    """What ``--model`` names; unique across plugins."""
    build: Callable | str
    """The build function, or a ``"module:function"`` string imported on first use."""
    summary: str
    """One line for ``pxp-bench list models``."""
    family: str = "cnn"
    """``cnn`` (also any model without attention, an MLP included: it has ``neurons``, no ``filters``) or
    ``transformer``; must match `LoadedModel.family`."""
    default_dataset: str | None = None
    """The dataset the model is built for (`pxp_bench.testing.check_model` builds it for that one)."""
    task: str = CLASSIFICATION
    """The task its models are evaluated on (`TaskSpec`): a dataset of another task is refused before building."""

    def load_build(self) -> Callable:
        return resolve_callable(self.build, f"model '{self.name}'")


@dataclass(frozen=True)
class Probe:
    """A dataset's named subset of predictions, scored on its own beside the whole: the generated corpus'
    copied bytes, which only induction heads predict ("copy accuracy", a ground truth of what pruning broke).

    ``positions(labels)`` marks per sample the predictions in the subset: for language modelling a boolean
    ``(batch, L)`` whose position t marks the prediction of token t + 1 (`pxp_bench.lm.corpus.copy_positions`).
    """

    name: str
    """Names the record's keys: ``<name>_accuracy`` per curve point, ``<name>_apr`` and ``<name>_0/25/50/75``."""
    positions: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DatasetSplits:
    """A labelled dataset's splits; every split has a ``targets`` sequence of integer labels.

    ``tune`` is a dedicated tuning split when the dataset has one; otherwise tuning samples are drawn
    from ``train``, disjoint from the reference samples.
    """

    train: Dataset
    """Items ``(input tensor of input_shape, int label)``; the reference samples (and, without ``tune``, the
    tuning samples) are drawn from it, so it needs every class."""
    eval: Dataset
    """The evaluation split: the pruning curve is measured on samples drawn from it."""
    num_classes: int
    """Labels are ``0 .. num_classes - 1``."""
    class_names: list[str]
    """One name per label, in label order (recorded in results)."""
    input_shape: tuple[int, ...]
    """The shape of one input; ``()`` for image files, whose shape the model's ``transform`` decides
    (`use_transform` then records it). The run checks item 0 of every split against it."""
    tune: Dataset | None = None
    """A dedicated tuning split, when the dataset has one."""
    task: str = CLASSIFICATION
    """The task its items serve (`TaskSpec`): ``classification`` labels items by class; ``language_modelling``
    items are ``(token ids, token ids)`` of one sequence, ``num_classes`` 1."""
    probe: Probe | None = None
    """A subset of the evaluation's predictions scored on its own beside the whole (the corpus' copied bytes),
    where the dataset has one (`Probe`)."""

    def use_transform(self, transform: Callable | None) -> None:
        """Give image datasets the model's preprocessing, then record the resulting input shape.

        Datasets without a ``transform`` attribute (tensors) keep their own shape.
        """
        if transform is None:
            return
        changed = False
        for split in (self.train, self.tune, self.eval):
            if split is not None and hasattr(split, "transform"):
                split.transform = transform
                changed = True
        if changed:
            self.input_shape = tuple(self.train[0][0].shape)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset. ``load(name, root) -> DatasetSplits``; ``root`` is None for embedded datasets."""

    name: str
    load: Callable | str
    summary: str
    needs_root: bool = False

    def load_splits(self) -> Callable:
        return resolve_callable(self.load, f"dataset '{self.name}'")


@dataclass(frozen=True)
class TaskSpec:
    """What evaluation means: how a batch is scored, which samples a run draws, what a method explains.

    ``implementation`` is a `pxp_bench.tasks.base.Task` instance or a ``"module:attribute"`` string naming one
    (imported on first use).
    """

    name: str
    """What models (`LoadedModel.task`) and datasets (`DatasetSplits.task`) name."""
    implementation: Any
    summary: str

    def load(self):
        ref = self.implementation
        return import_reference(ref, f"task '{self.name}'") if isinstance(ref, str) else ref


@dataclass(frozen=True)
class OptimizerSpec:
    """A hyperparameter optimizer.

    ``run(study, space, objective, *, trials, timeout, seed, callbacks)`` runs at most ``trials`` more
    trials of ``objective`` on the Optuna ``study`` (see `pxp_bench.optimize.optimizers`), enqueued
    (waiting) trials first: trial 0 is the method's default. ``trials`` is what ``--trials`` leaves after
    the finished (completed or stopped) trials the study holds already, and a callback in ``callbacks``
    stops the study once it holds ``--trials`` finished trials (workers share it), so fewer may run.
    ``objective`` takes an Optuna trial, suggests the parameters of ``space`` on it and returns the value
    to maximise (the tuning set's A_PR, averaged over the study's seeds), or raises ``optuna.TrialPruned``
    when the pruner stops it mid-curve: such a trial is PRUNED and has no value (Optuna stores its last
    partial report as ``trial.value``; never read that as its value). ``timeout``: seconds after which no
    trial starts (None: no limit); ``seed``: seeds every random choice; ``callbacks``: call each for every
    finished trial (``study.optimize`` does).
    """

    name: str
    """What ``--optimizer`` names; unique across plugins."""
    run: Callable | str
    """The run function, or a ``"module:function"`` string imported on first use."""
    summary: str
    """One line for ``pxp-bench list optimizers``."""
    prunes: bool = True
    """Whether a pruner may stop its trials early (an exhaustive grid should not)."""

    def load_run(self) -> Callable:
        return resolve_callable(self.run, f"optimizer '{self.name}'")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a suite's cells run (`pxp_bench.suites`).

    ``run(tasks, *, jobs, options, on_done)`` runs each `pxp_bench.suites.cells.CellTask` through
    `pxp_bench.suites.cells.execute_cell` in a process of its own, at most ``jobs`` at a time where the
    executor limits that itself, and calls ``on_done(task, crash)`` as each one ends: ``crash`` is None
    when the process ended normally (the cell recorded its own outcome), else one line saying why it
    died. ``options`` holds the executor's own settings (``options`` here: name -> help). An executor
    with ``reports_status`` also takes ``on_status(text)``, to tell the user where its work stands (the
    cluster jobs' states) whenever that changes. ``check(options, count)``, where given, refuses (raising
    `pxp_bench.errors.ConfigError`) what the executor could not run ``count`` cells with, before any runs.
    """

    name: str
    run: Callable | str
    summary: str
    options: Mapping[str, str] = field(default_factory=dict)
    reports_status: bool = False
    check: Callable | str | None = None

    def load_check(self) -> Callable | None:
        return None if self.check is None else resolve_callable(self.check, f"executor '{self.name}'")

    def load_run(self) -> Callable:
        return resolve_callable(self.run, f"executor '{self.name}'")
