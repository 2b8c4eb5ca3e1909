"""Attribution methods and what they share. The methods, one module per family: `baselines` (random,
magnitude), `gradients` (taylor, ig, smoothgrad), `lrp` (zennit composites for CNNs) and `attnlrp` (lxt's
AttnLRP / CP-LRP for transformers and language models), `captum_bridge` (captum's layer attributions and true
ablation), `torch_pruning_bridge` (the pruning literature's criteria). What they share: `reference` (the
``ReferenceSet`` and ``RunContext`` a method receives), `capture` (site tensors of a forward pass),
`aggregate` (per-sample relevances to one score per component), `lrp_rules` (the depth groups and rule table
of both LRP rule sets), `options` (shared parameter declarations). `builtin`, `captum_builtin` and
`torch_pruning_builtin` register them as built-in plugins."""
