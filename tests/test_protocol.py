from __future__ import annotations

from collections import Counter

import pytest
import torch

from pxp_bench.data.protocol import draw_sets, seed_streams
from pxp_bench.errors import ConfigError
from pxp_bench.specs import DatasetSplits


def test_digits_split_is_fixed_and_stratified(digits):
    sizes = len(digits.train), len(digits.tune), len(digits.eval)
    assert sum(sizes) == 1797 and sizes == (1078, 359, 360)
    assert digits.input_shape == (1, 32, 32) and tuple(digits.train.inputs.shape[1:]) == (1, 32, 32)
    assert 0.0 <= float(digits.train.inputs.min()) and float(digits.train.inputs.max()) <= 1.0
    whole = Counter(digits.train.targets) + Counter(digits.tune.targets) + Counter(digits.eval.targets)
    for split, share in ((digits.train, 0.6), (digits.tune, 0.2), (digits.eval, 0.2)):
        counts = Counter(split.targets)
        assert all(abs(counts[c] - share * whole[c]) <= 1 for c in range(10))
    # the three splits partition the data set: every image exactly once, none shared between splits
    from sklearn.datasets import load_digits

    def rows(inputs):
        return Counter(bytes(x.numpy().tobytes()) for x in inputs)

    raw = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    whole_images = rows(torch.nn.functional.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False))
    assert rows(digits.train.inputs) + rows(digits.tune.inputs) + rows(digits.eval.inputs) == whole_images


def test_draws_are_deterministic_and_streams_independent(digits):
    a = draw_sets(digits, n_classes=3, ref_per_class=5, tune_per_class=4, seed=7)
    b = draw_sets(digits, n_classes=3, ref_per_class=5, tune_per_class=4, seed=7)
    assert a == b
    # more reference samples do not change which classes or tuning samples are drawn
    c = draw_sets(digits, n_classes=3, ref_per_class=9, tune_per_class=4, seed=7)
    assert (c.classes, c.tuning) == (a.classes, a.tuning)
    assert len(a.classes) == 3 and len(a.reference) == 15 and len(a.tuning) == 12
    assert {digits.train.targets[i] for i in a.reference} == set(a.classes)
    assert {digits.eval.targets[i] for i in a.evaluation} == set(a.classes)
    assert a.tuning_split == "tune"


def test_seed_streams_differ_by_purpose_and_seed():
    first = seed_streams(0)
    values = {name: rng.integers(1 << 30) for name, rng in first.items()}
    assert len(set(values.values())) == len(values)
    assert seed_streams(0)["classes"].integers(1 << 30) == values["classes"]
    assert seed_streams(1)["classes"].integers(1 << 30) != values["classes"]


def test_tuning_from_train_is_disjoint_from_reference(digits):
    no_tune = DatasetSplits(train=digits.train, eval=digits.eval, num_classes=10,
                            class_names=digits.class_names, input_shape=digits.input_shape)
    sets = draw_sets(no_tune, n_classes=None, ref_per_class=50, tune_per_class=50, seed=0)
    assert sets.tuning_split == "train" and not set(sets.reference) & set(sets.tuning)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_classes=11), "--classes 11 is out of range"),
    (dict(ref_per_class=500), "fewer than --ref-per-class 500"),
    (dict(ref_per_class=0), "--ref-per-class must be at least 1"),
    (dict(tune_per_class=200), "fewer than --tune-per-class 200"),
    (dict(tune_per_class=-1), "--tune-per-class must be 0 or more"),
])
def test_impossible_draws_are_refused(digits, kwargs, message):
    options = dict(n_classes=None, ref_per_class=10, tune_per_class=0, seed=0) | kwargs
    with pytest.raises(ConfigError, match=message):
        draw_sets(digits, **options)


def test_a_single_class_is_refused(digits):
    one_class = DatasetSplits(train=digits.train, eval=digits.eval, num_classes=1, class_names=["0"],
                              input_shape=digits.input_shape)
    with pytest.raises(ConfigError, match="at least 2 are needed"):
        draw_sets(one_class, n_classes=None, ref_per_class=1, tune_per_class=0, seed=0)
