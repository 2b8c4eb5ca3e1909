"""Records read back and rerun: the one loader that recomputes what a record states (`load`; the curve from
its outcomes and the metrics from its curve in `recompute`, the sample sets from its seed and options in
`samples`) and `pxp-bench verify`, which reruns records and compares them bit for bit (`verify`, `rerun`)."""

from pxp_bench.records.load import Collection, KeptOut, collect_results, describe_grid, load_records

__all__ = ["Collection", "KeptOut", "collect_results", "describe_grid", "load_records"]
