"""Physical removal (PROTOCOL section 5b): a slimmed copy of a pruned model that follows the curve
(`surgery`, with attention heads in `heads`), the curve measured on it (`curve`), what it costs (`efficiency`:
parameters, FLOPs, latency) and its export at one rate (`export`)."""
