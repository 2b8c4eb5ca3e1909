"""Task kinds: what evaluating a pruned model means (PROTOCOL section 4, and section 12 for language models).

A task decides which samples a run draws (reference, tuning, evaluation), how one batch is scored (the
correct predictions out of how many, per sample), what a method explains (the target output per sample),
and which extra curve a result carries (perplexity for language models). Tasks are plugins
(``register_tasks``); a model (`LoadedModel.task`) and a dataset (`DatasetSplits.task`) name theirs, and a
run refuses a pair whose tasks differ. The protocol is `Task` in `base` (with `BatchOutcome`);
`classification` and `language_modelling` implement it, `builtin` registers them. This package imports
nothing itself, so registering the built-in tasks never imports torch.
"""
