"""Built-in dataset plugins: the embedded digits set, ImageNet, and any image-folder dataset."""

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
    register(DatasetSpec(
        name="imagenet",
        load="pxp_bench.data.imagefolder:load_image_folders",
        summary="ILSVRC-2012: ROOT/train and ROOT/val, one folder per WordNet id (sorted = class index)",
        needs_root=True,
    ))
    register(DatasetSpec(
        name="imagefolder",
        load="pxp_bench.data.imagefolder:load_image_folders",
        summary="any dataset laid out as ROOT/train/<class>/ and ROOT/val/<class>/",
        needs_root=True,
    ))
