"""A whole run end to end (scoring + the 20-rate curve) on JPEG files, as a user runs it (figures in the README).

torchvision resnet18 and vgg16_bn with random weights on an ImageNet-layout folder of generated
500x375 JPEGs (3 classes, 10 reference and 50 evaluation images each: the paper's protocol at 3
classes), LRP-epsilon (the default composite), every option at its default: slimmed evaluation with
latency. ``extra_info`` holds the stages' seconds; the README compares them with the paper's reference
code timed on the same folder (that code is not part of this repository). Heavy on a CPU (vgg16_bn:
minutes on 2 cores): ``make bench`` only.
"""

from __future__ import annotations

import time

import pytest

from pxp_bench.benchmark import run_benchmark
from pxp_bench.plan import Benchmark
from pxp_bench.testing.data import write_jpeg_folder


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    return write_jpeg_folder(tmp_path_factory.mktemp("imagenet"), per_split=(10, 50))


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn"])
def test_a_whole_run_on_jpeg_files(benchmark, jpeg_folder, name):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    bench = Benchmark(model=name, weights="none", dataset="imagenet", data_root=str(jpeg_folder), method="lrp",
                      ref_per_class=10)
    started = time.perf_counter()
    result = benchmark.pedantic(run_benchmark, args=(bench,), rounds=1, iterations=1)
    benchmark.extra_info.update({"total_s": round(time.perf_counter() - started, 2), **result.timings,
                                 "evaluation_images": result.samples["evaluation"],
                                 "reference_images": result.samples["reference"]})
    assert len(result.curve) == 20 and result.evaluate == "slim"
