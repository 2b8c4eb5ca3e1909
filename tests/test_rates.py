from __future__ import annotations

import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.rates import DEFAULT_GRID, DEFAULT_RATES, check_grid_fits, normalise_rates, parse_rates


def test_default_grid_is_twenty_rates_from_zero_to_095():
    assert parse_rates(DEFAULT_GRID) == DEFAULT_RATES
    assert len(DEFAULT_RATES) == 20 and DEFAULT_RATES[0] == 0.0 and DEFAULT_RATES[-1] == 0.95


def test_comma_list_is_sorted_deduplicated_and_always_has_zero():
    assert parse_rates("0.5,0.1,0.5") == (0.0, 0.1, 0.5)


def test_range_excludes_stop():
    assert parse_rates("0:0.3:0.1") == (0.0, 0.1, 0.2)
    assert parse_rates("0.2:0.5:0.1") == (0.0, 0.2, 0.3, 0.4)


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("0,abc", "'abc' is not a number"), ("0:1", "start:stop:step"),
    ("0:1:0", "step must be positive"), ("0,1.5", "must lie in \\[0, 1\\]"), ("-0.1", "must lie"),
    ("0,inf", "not a finite"),
])
def test_malformed_or_out_of_range(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_rates(text)


@pytest.mark.parametrize("text", ["0", "1:0:0.1", "0,0.0"])
def test_a_grid_without_a_rate_above_zero_is_refused(text):
    with pytest.raises(ConfigError, match="no rate above 0"):
        parse_rates(text)


def test_a_grid_too_fine_to_evaluate_is_refused_before_it_is_built():
    with pytest.raises(ConfigError, match="1,000,000,000 rates; at most 1,000"):
        parse_rates("0:1:1e-9")
    with pytest.raises(ConfigError, match="at most 1,000"):
        normalise_rates([i / 5000 for i in range(5000)])


def test_a_grid_finer_than_one_rate_per_component_is_refused_but_the_standard_grid_fits():
    check_grid_fits(DEFAULT_RATES, 16)  # 19 rates above 0 on 16 heads: the standard grid always fits
    check_grid_fits(parse_rates("0:1:0.01"), 160)
    with pytest.raises(ConfigError, match="99 rates above 0, but the model has only 40 components"):
        check_grid_fits(parse_rates("0:1:0.01"), 40)


@pytest.mark.parametrize("rates", ["0,0.5", (), [0.0, "0.5"], 0.5, [True]])
def test_python_api_rates_must_be_a_sequence_of_numbers(rates):
    with pytest.raises(ConfigError):
        normalise_rates(rates)


def test_numpy_numbers_are_rates_too():
    import numpy as np

    assert normalise_rates([np.float32(0.5), np.int64(1)]) == (0.0, 0.5, 1.0)
