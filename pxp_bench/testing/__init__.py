"""The conformance kit: call these from a plugin's own tests (``pytest``), as ours do for every built-in.

- `check_method`: the declared components and parameter space are valid; scores on a real model and
  real reference data have the right groups and shapes, are finite and not constant; the model is
  bitwise unchanged and free of hooks afterwards, also when scoring raises; the same seed gives the
  same scores. All of this at the defaults (updated by ``params=``); then at ``points=`` (2) seeded points
  drawn from the searched space: valid scores, the model unchanged.
- `check_model`: it builds, its forward pass gives one finite logit per class, its components are
  found, and two builds are identical.
- `check_dataset`: every split is non-empty and labelled within the classes, items have the declared
  shape, and two loads are identical.
- `check_optimizer`: it runs the enqueued default first, then exactly the trials asked for, within the
  space, calls the callbacks, and repeats its sequence under the same seed; a trial the objective stops
  stays stopped (PRUNED, no value) and its partial reports never steer later proposals.

Each raises `ConformanceError` (an ``AssertionError``) whose message names the plugin and the problem, also
for an unknown name or a ``"module:function"`` callable that cannot be imported. The checks a run repeats
every time (scores, the model after scoring, a dataset's items) are `pxp_bench.guards`, shared with the kit.

`fresh_plugins` loads the process-wide plugins afresh for a block (a test that selects plugins with
``PXP_BENCH_LOAD_PLUGINS`` or installs one), as the example plugin's ``tests/conftest.py`` does.

The kit's modules: `kit` (what every check shares), `methods`, `data` (models and datasets), `optimizers`.
"""

from __future__ import annotations

from pxp_bench.testing.data import check_dataset, check_model
from pxp_bench.testing.kit import ConformanceError, fresh_plugins
from pxp_bench.testing.methods import check_method, check_method_spec, drawn_points
from pxp_bench.testing.optimizers import check_optimizer

__all__ = ["ConformanceError", "check_dataset", "check_method", "check_method_spec", "check_model", "check_optimizer",
           "drawn_points", "fresh_plugins"]
