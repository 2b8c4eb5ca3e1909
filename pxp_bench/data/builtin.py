"""Built-in dataset plugin: the embedded digits set."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import DatasetSpec


@hookimpl
def register_datasets(register) -> None:
    register(DatasetSpec(
        name="digits",
        load="pxp_bench.data.digits:load_digits_splits",
        summary="scikit-learn's embedded 8x8 digits, 10 classes, upsampled to 1x32x32; 60/20/20 split",
    ))
