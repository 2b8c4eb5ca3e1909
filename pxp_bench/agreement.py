"""Agreement with ablation: how close a method's ranking comes to what removing each component does.

Ablation (the ``ablation`` method: the measured drop of the target logit when one component is masked)
is the quantity every criterion approximates. A run with ``agreement`` scores its reference set by
ablation too (cached per setting, since every method of a setting shares the reference set) and records
the Spearman correlation of the two score vectors over all components, and, at 25 % and 50 %, the share
of the components the method prunes that ablation prunes as well (the same per-layer cap applied to both).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch

from pxp_bench.components import Components
from pxp_bench.data.protocol import index_hash
from pxp_bench.errors import ConfigError
from pxp_bench.masking import pruned_count, rank_components
from pxp_bench.params import resolve_params
from pxp_bench.plan import file_safe_model
from pxp_bench.results import atomic_write_bytes, ensure_writable_dir
from pxp_bench.scores import encode_scores, load_scores

if TYPE_CHECKING:
    from pxp_bench.prepare import Prepared
    from pxp_bench.specs import MethodSpec

    Scorer = Callable[[MethodSpec, Mapping[str, Any]], dict[str, torch.Tensor]]
    """Scores of a method on the run's reference set under typed parameters (`pxp_bench.benchmark.score_with`)."""

ABLATION = "ablation"
"""The method whose scores are the reference."""
ABLATION_CACHE = "ablation-cache"
"""The folder in a run's or suite's --out where ablation scores are kept per setting."""
OVERLAP_RATES = (0.25, 0.5)
"""The rates at which the pruned sets are compared (``overlap_25``, ``overlap_50``)."""


def agreement(components: Components, scores: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
              max_layer_rate: float | None = None) -> dict[str, float | None]:
    """Spearman's rho between ``scores`` and ``reference`` over all components (None when either ranks
    nothing: constant scores), and the overlap of the pruned sets at `OVERLAP_RATES`."""
    from scipy.stats import spearmanr

    flat = [torch.cat([values[g.name].detach().double().flatten().cpu() for g in components.groups]).numpy()
            for values in (scores, reference)]
    constant = any(float(values.min()) == float(values.max()) for values in flat)
    rho = None if constant else float(spearmanr(flat[0], flat[1]).statistic)
    ours = rank_components(components, scores, max_layer_rate)
    theirs = rank_components(components, reference, max_layer_rate)
    record: dict[str, float | None] = {"spearman": rho}
    for rate in OVERLAP_RATES:
        n = min(pruned_count(rate, components.total), len(ours), len(theirs))
        shared = len(set(ours[:n].tolist()) & set(theirs[:n].tolist()))
        record[f"overlap_{round(rate * 100)}"] = shared / n if n else None
    return record


def _cache_path(prepared: Prepared, params: Mapping[str, Any]) -> Path:
    """One file per setting: model, weights, dataset, components, classes, reference samples and
    ablation's parameters decide the ablation scores."""
    plan, sets = prepared.plan, prepared.sets
    identity = {"model": plan.model.name, "weights": prepared.loaded.weights, "dataset": plan.dataset.name,
                "components": plan.components, "classes": list(sets.classes),
                "reference": index_hash(sets.reference), "image_size": prepared.bench.image_size,
                "params": dict(params)}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    stem = f"{file_safe_model(plan.model.name)}_{plan.components}_{digest}"
    return Path(prepared.bench.ablation_cache) / f"{stem}.safetensors"


def check_ablation_cache(folder: Path, option: str = "--out") -> None:
    """Refuse, before any work, an ablation cache that cannot hold files: something other than a folder
    in its place, or a folder files cannot be created in. One not there yet is left to be made when first
    used (its parent, ``option``'s folder, is checked writable by the caller), so a refused run leaves none."""
    folder = Path(folder)
    if not (folder.exists() or folder.is_symlink()):
        return
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder, so ablation scores cannot be cached there: move or remove "
                          f"it, or choose another {option}.")
    ensure_writable_dir(folder, f"{option} (its {ABLATION_CACHE} folder)")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock file: two cells of one setting compute its ablation once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ablation_scores(prepared: Prepared, score_with: Scorer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Ablation's scores on the run's reference set (its default parameters), from the cache when
    ``bench.ablation_cache`` holds them, else computed with ``score_with``; with those parameters."""
    if ABLATION not in prepared.plugins.methods:
        raise ConfigError(f"agreement needs the '{ABLATION}' method, which no loaded plugin registers.")
    spec = prepared.plugins.methods.get(ABLATION)
    if prepared.plan.components not in spec.components or prepared.plan.model.family not in spec.families:
        raise ConfigError(f"agreement: '{ABLATION}' cannot score {prepared.plan.components} of a "
                          f"{prepared.plan.model.family}; drop --agreement.")
    params = resolve_params(spec.space_for(prepared.plan.model.family), owner=f"method '{ABLATION}'")
    return cached_ablation(prepared, params, lambda: score_with(spec, params))[0], params


def cached_ablation(prepared: Prepared, params: Mapping[str, Any],
                    compute: Callable[[], dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], float]:
    """Ablation's scores under typed ``params`` and the seconds computing them took: from
    ``bench.ablation_cache`` when it holds them (their time as measured then), else ``compute()``d (and
    kept there, when the run has a cache). An ``ablation`` run shares the agreement's file at the defaults."""
    if prepared.bench.ablation_cache is None:
        return _timed(compute)
    path = _cache_path(prepared, params)
    with _locked(path):
        if path.exists():
            saved = load_scores(path, prepared.components)
            return saved.scores, float(saved.metadata.get("seconds") or 0.0)
        scores, seconds = _timed(compute)
        atomic_write_bytes(path, encode_scores(prepared.components, scores, {
            "model": prepared.plan.model.name, "weights": prepared.loaded.weights,
            "components": prepared.plan.components, "method": ABLATION, "params": dict(params),
            "seed": prepared.bench.seed, "classes": list(prepared.sets.classes), "seconds": round(seconds, 4)}))
    return scores, seconds


def _timed(compute: Callable[[], dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], float]:
    clock = time.perf_counter()
    scores = compute()
    return scores, time.perf_counter() - clock


def agreement_record(prepared: Prepared, scores: Mapping[str, torch.Tensor],
                     score_with: Scorer) -> tuple[dict[str, Any], float]:
    """The record's ``agreement`` (`agreement` with ablation's parameters) and the seconds it took."""
    clock = time.perf_counter()
    reference, params = ablation_scores(prepared, score_with)
    record = {"reference": ABLATION, "params": params,
              **agreement(prepared.components, scores, reference, prepared.bench.max_layer_rate)}
    return record, time.perf_counter() - clock
