"""Verdicts with intervals, all drawn from one hierarchical, stratified, paired bootstrap (`bootstrap`):
one setting's intervals, paired differences and ranks (`setting`), the across-settings summary of wins
(`summary`), whether a method ordering survives a change of condition (`stability`: Kendall's tau on shared
replicates), and `pxp-bench compare` of two runs or two folders of seeds (`compare`)."""
