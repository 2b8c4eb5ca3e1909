"""The run pipeline through the Python API: records, and refusals that need plugins of their own."""

from __future__ import annotations

import pytest
import torch

from helpers import QUICK_RATES
from pxp_bench import Benchmark, DatasetSpec, DatasetSplits, MethodSpec, hookimpl, run_benchmark
from pxp_bench.data.digits import load_digits_splits
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ComponentError, ConfigError, DataError, PluginError, UnknownNameError
from pxp_bench.plugins import Plugins


def test_a_run_records_what_the_protocol_asks_for(plugins):
    result = run_benchmark(Benchmark(method="taylor", rates=QUICK_RATES, n_classes=4), plugins=plugins)
    record = result.to_dict()
    for key in ("schema_version", "protocol_version", "method", "variant", "model", "dataset", "components",
                "params", "seed", "classes", "rates", "curve", "metrics", "layers", "timings", "environment"):
        assert key in record
    assert record["variant"] == "default" and record["params"] == {"aggregation": "abs", "normalize": "none", "init": "logit"}
    assert set(record["metrics"]) == {"a_pr", "top_pr", "auc", "acc_25", "acc_50", "acc_75", "collapse_rate", "params_at_top_pr",
                                      "flops_at_top_pr", "speedup_at_top_pr", "speedup_at_top_pr_spread"} \
        and record["evaluate"] == "slim"
    assert {"load", "discover", "score", "evaluate", "total"} <= set(record["timings"])
    assert record["weights"].startswith("packaged:") and len(record["classes"]) == 4
    assert record["samples"]["reference"] == 40 and record["samples"]["components"] == 160
    pruned = [point["pruned"] for point in record["curve"]]
    assert pruned == [0, 48, 96]
    for rate_index, count in enumerate(pruned):
        fractions = [layer[rate_index] for layer in record["layers"].values()]
        sizes = [16, 16, 32, 32, 64]
        assert round(sum(f * s for f, s in zip(fractions, sizes))) == count


def test_params_and_presets_set_the_variant(plugins):
    custom = run_benchmark(Benchmark(method="taylor", rates=(0.0, 0.5), param_texts={"aggregation": "signed"}),
                           plugins=plugins)
    assert custom.variant == "custom" and custom.params["aggregation"] == "signed"
    with pytest.raises(ConfigError, match="no preset 'yeom'.*presets: default"):
        run_benchmark(Benchmark(method="taylor", preset="yeom"), plugins=plugins)
    with pytest.raises(ConfigError, match="unknown parameter 'sigma' for method 'taylor'"):
        run_benchmark(Benchmark(method="taylor", param_texts={"sigma": "1"}), plugins=plugins)


@pytest.mark.parametrize("bench, error, message", [
    (Benchmark(model="digits-vg"), UnknownNameError, "Did you mean 'digits-vgg'"),
    (Benchmark(method="lrp-eps"), UnknownNameError, "unknown method 'lrp-eps'"),
    (Benchmark(dataset="imagenett"), UnknownNameError, "Did you mean 'imagenet'"),
    (Benchmark(dataset="imagenet"), ConfigError, "needs its files: pass --data"),
    (Benchmark(components="channels"), ConfigError, "unknown components 'channels'"),
    (Benchmark(method="magnitude", components="heads"), ComponentError, "no attention module"),
    (Benchmark(data_root="/tmp"), ConfigError, "takes no --data .it is embedded"),
    (Benchmark(batch_size=0), ConfigError, "--batch-size"),
    (Benchmark(device="tpu"), ConfigError, "unknown device 'tpu'"),
    (Benchmark(model="digits-resnet", components="neurons"), ComponentError, "no hidden fully connected"),
])
def test_bad_specs_are_refused_clearly(plugins, bench, error, message):
    with pytest.raises(error, match=message):
        run_benchmark(bench, plugins=plugins)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused(plugins):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        run_benchmark(Benchmark(device="cuda"), plugins=plugins)


def _digits_variant(inputs_size: int = 32, num_classes: int = 10) -> DatasetSplits:
    base = load_digits_splits()

    def reshape(split):
        inputs = torch.nn.functional.interpolate(split.inputs, size=inputs_size) if inputs_size != 32 else split.inputs
        return LabelledTensors(inputs, split.targets)

    return DatasetSplits(train=reshape(base.train), eval=reshape(base.eval), num_classes=num_classes,
                         class_names=[str(i) for i in range(num_classes)], input_shape=(1, inputs_size, inputs_size))


class OddDatasets:
    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec(name="digits-16px", load=lambda name, root: _digits_variant(16), summary="small"))
        register(DatasetSpec(name="digits-12-classes", load=lambda name, root: _digits_variant(num_classes=12),
                             summary="more classes than the zoo has outputs"))
        register(DatasetSpec(name="on-disk", load=lambda name, root: _digits_variant(), summary="needs files",
                             needs_root=True))


def test_a_dataset_that_does_not_fit_the_model_is_refused():
    odd = Plugins(load_external=False, extra=(OddDatasets(),))
    with pytest.raises(DataError, match=r"shape \(1, 16, 16\).*expects \(1, 32, 32\)"):
        run_benchmark(Benchmark(dataset="digits-16px"), plugins=odd)
    with pytest.raises((DataError, ConfigError), match="12 classes"):
        run_benchmark(Benchmark(dataset="digits-12-classes"), plugins=odd)
    with pytest.raises(ConfigError, match="needs its files: pass --data"):
        run_benchmark(Benchmark(dataset="on-disk"), plugins=odd)
    with pytest.raises(DataError, match="does not exist"):
        run_benchmark(Benchmark(dataset="on-disk", data_root="/no/such/folder"), plugins=odd)


class RaisingMethods:
    @hookimpl
    def register_methods(self, register):
        def explode(model, components, reference, context):
            raise ValueError("division by zero in my method")

        def wrong_shape(model, components, reference, context):
            return {name: torch.zeros(1) for name in components.names}

        register(MethodSpec(name="explodes", score=explode, summary="raises"))
        register(MethodSpec(name="wrong-shape", score=wrong_shape, summary="bad scores"))


def test_a_third_party_method_that_raises_or_misbehaves_is_named():
    loaded = Plugins(load_external=False, extra=(RaisingMethods(),))
    with pytest.raises(PluginError, match="method 'explodes' from plugin 'RaisingMethods'.*division by zero"):
        run_benchmark(Benchmark(method="explodes"), plugins=loaded)
    with pytest.raises(PluginError, match="method 'wrong-shape' from plugin 'RaisingMethods'.*unusable scores.*"
                                          r"have shape \(1,\); expected \(16,\)"):
        run_benchmark(Benchmark(method="wrong-shape"), plugins=loaded)


def test_python_api_rates_are_normalised_and_checked(plugins):
    result = run_benchmark(Benchmark(method="magnitude", rates=(0.5, 0.2, 0.5)), plugins=plugins)
    assert result.rates == [0.0, 0.2, 0.5]
    with pytest.raises(ConfigError, match="rates must lie in"):
        run_benchmark(Benchmark(rates=(0.0, 1.5)), plugins=plugins)
    with pytest.raises(ConfigError, match="--seed must be 0 or more"):
        run_benchmark(Benchmark(seed=-1), plugins=plugins)


@pytest.mark.parametrize("bench, message", [
    (Benchmark(rates="0,0.5"), "expected a sequence of numbers"),
    (Benchmark(rates=()), "no rate above 0"),
    (Benchmark(rates=(0.0,)), "no rate above 0"),
    (Benchmark(n_classes="3"), "n_classes must be an integer or None"),
    (Benchmark(n_classes=1), "--classes 1 is out of range.*use 2..10"),
    (Benchmark(ref_per_class="10"), "ref_per_class must be an integer"),
    (Benchmark(rates=tuple(i / 500 for i in range(500))), "499 rates above 0, but the model has only 160"),
    (Benchmark(param_texts={"attention": "cp"}), "'attention' of method 'lrp' exists only for transformer and lm models"),
])
def test_python_api_bad_values_raise_our_config_error(plugins, bench, message):
    with pytest.raises(ConfigError, match=message):
        run_benchmark(bench, plugins=plugins)


def test_results_record_protocol_v2_and_the_scoring_diagnostics(plugins):
    result = run_benchmark(Benchmark(method="taylor", param_texts={"init": "one"}, rates=(0.0, 0.5), n_classes=3),
                           plugins=plugins)
    assert result.protocol_version == 2
    assert result.diagnostics == {"excluded_attention": [], "near_zero_logits_skipped": 0}


def test_stages_prepare_once_score_and_evaluate_on_either_split(plugins):
    from pxp_bench.benchmark import evaluate, prepare, score

    prepared = prepare(Benchmark(method="taylor", n_classes=3, tune_per_class=5, rates=QUICK_RATES, seed=1),
                       plugins=plugins)
    signed = score(prepared, {**prepared.plan.params, "aggregation": "signed"}).scores
    default = score(prepared).scores
    assert any(not torch.equal(signed[n], default[n]) for n in default)
    on_tune = evaluate(prepared, default, "tune")
    assert {p.total for p in on_tune} == {15}  # 5 per class, from digits' tune split
    on_eval = evaluate(prepared, default, "eval")
    assert {p.total for p in on_eval} == {len(prepared.sets.evaluation)}
    again = run_benchmark(Benchmark(method="taylor", n_classes=3, tune_per_class=5, rates=QUICK_RATES, seed=1),
                          plugins=plugins)
    assert [p["correct"] for p in again.curve] == [p.correct for p in on_eval]
    without_tuning = prepare(Benchmark(method="taylor", rates=QUICK_RATES), plugins=plugins)
    with pytest.raises(ConfigError, match="tuning set is empty.*--tune-per-class"):
        evaluate(without_tuning, default, "tune")


def test_evaluation_reuse_is_exact_and_counted(plugins):
    from pxp_bench.benchmark import evaluate, prepare, score

    bench = Benchmark(method="lrp", n_classes=4, tune_per_class=6, rates=(0.0, 0.05, 0.1, 0.3, 0.6), seed=2)
    shared = prepare(bench, plugins=plugins)
    configurations = [{**shared.plan.params, "low": rule} for rule in ("epsilon", "zplus", "gamma")]
    reused = [evaluate(shared, score(shared, params).scores, "tune") for params in configurations]
    memo = shared.memos["tune"]
    assert memo.hits > 0 and memo.hits + memo.misses == 15  # rate 0 alone repeats across configurations
    for params, curve in zip(configurations, reused):
        fresh = prepare(bench, plugins=plugins)  # a new memo: every set evaluated from scratch
        assert curve == evaluate(fresh, score(fresh, params).scores, "tune")
