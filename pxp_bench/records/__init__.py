"""Records read back and rerun: the one loader that recomputes what a record states (`load`: curve from
outcomes, metrics from curve, sample sets from seed and options) and `pxp-bench verify`, which reruns records
and compares them bit for bit (`verify`, `rerun`)."""

from pxp_bench.records.load import Collection, KeptOut, collect_results, describe_grid, load_records

__all__ = ["Collection", "KeptOut", "collect_results", "describe_grid", "load_records"]
