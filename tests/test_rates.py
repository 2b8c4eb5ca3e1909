from __future__ import annotations

import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.rates import DEFAULT_GRID, parse_rates


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
