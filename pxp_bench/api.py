"""The plugin author's toolbox: everything a method, model or dataset plugin needs besides the specs.

The specs, parameter types and ``hookimpl`` come from ``pxp_bench`` itself (no torch); this module
imports torch. The built-in methods are written with exactly these names.

A method's score function::

    def score(model, components, reference, context, **params) -> dict[str, torch.Tensor]:

- ``model``: the classifier, in eval mode on ``context.device``. Leave it as you found it: the same
  weights, modes and no hooks, also when you raise (use context managers such as `captured_sites`).
  Scoring does not start under ``torch.no_grad``: grad mode is on (torch's default; the core never turns
  it off around a method) and the weights keep ``requires_grad`` as the model was built (True for every
  built-in model). Do not rely on the caller: wrap backward passes in ``torch.enable_grad()``, forward-only
  passes in ``torch.no_grad()``, and take gradients with ``torch.autograd.grad`` (no ``.grad`` left behind).
- ``components``: `Components`, the units to score: one `ComponentGroup` per layer with its size, the
  module that produces it (``name``), the module whose tensor carries it (``site``) and where its
  channels lie in that tensor.
- ``reference``: `ReferenceSet`, the reference samples in batches on the device, with the run's classes
  (``reference.class_ids``, a ``list[int]``); ``reference.target_outputs(logits, targets)`` is the output a
  method explains, ``reference.log_likelihood(logits, targets)`` the per-sample log-likelihood over the run's
  classes (minus the loss).
- ``context``: `RunContext`, seeded random streams, the device, progress (`RunContext.track`) and
  ``diagnostics``, a dict recorded in the result.
- ``params``: the method's declared parameters (`MethodSpec.params`), already typed and checked.

Return one 1-D tensor of ``group.size`` finite scores per group name; higher means more relevant,
pruned later. `pxp_bench.testing.check_method` checks all of this.
"""

from __future__ import annotations

from pxp_bench.attribution.aggregate import RelevanceAggregator, init_weights
from pxp_bench.attribution.baselines import producing_weights, producing_weights_of
from pxp_bench.attribution.capture import SiteTensors, captured_sites, per_component
from pxp_bench.attribution.gradients import site_gradients
from pxp_bench.attribution.options import AGGREGATION, INIT_LOGIT, INIT_ONE, NORMALIZE
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import ComponentGroup, Components, discover_components
from pxp_bench.data.tensors import LabelledTensors

__all__ = [
    "AGGREGATION",
    "INIT_LOGIT",
    "INIT_ONE",
    "NORMALIZE",
    "ComponentGroup",
    "Components",
    "LabelledTensors",
    "ReferenceSet",
    "RelevanceAggregator",
    "RunContext",
    "SiteTensors",
    "captured_sites",
    "discover_components",
    "init_weights",
    "per_component",
    "producing_weights",
    "producing_weights_of",
    "site_gradients",
]
