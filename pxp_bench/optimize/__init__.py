"""Hyperparameter optimisation of attribution methods for pruning (PROTOCOL section 7).

`config` (what a study runs, its checks and name), `study` (the search: objective, pruner, repeats, the
best configuration evaluated), `storage` (journal or database, opening or resuming a study under its
identity), `provenance` (how the trials ended, which optimizers ran them, what an optimised result
records), `report` (the files and summary a study leaves), `optimizers` and `builtin` (the built-in
optimizer plugin), `slots` and `journal` (workers sharing a study and its journal file), `workers` and
`worker` (local worker processes), `cluster` (workers as jobs of a SLURM array)."""
