from __future__ import annotations

import json

import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.params import (
    Categorical,
    FloatRange,
    IntRange,
    parse_param_pairs,
    read_params_file,
    resolve_params,
)

SPACE = {
    "aggregation": Categorical(("abs", "signed"), "abs"),
    "n_steps": IntRange(1, 100, 20),
    "sigma": FloatRange(0.0, 1.0, 0.15),
}


def test_defaults_then_preset_then_values_then_texts():
    resolved = resolve_params(SPACE, owner="m", preset={"n_steps": 5}, values={"sigma": 0.5},
                              texts={"aggregation": "signed", "n_steps": "7"})
    assert resolved == {"aggregation": "signed", "n_steps": 7, "sigma": 0.5}
    assert resolve_params(SPACE, owner="m") == {"aggregation": "abs", "n_steps": 20, "sigma": 0.15}


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(ConfigError, match="unknown parameter 'aggregaton'.*Did you mean 'aggregation'"):
        resolve_params(SPACE, owner="method 'taylor'", texts={"aggregaton": "abs"})


@pytest.mark.parametrize("key, text", [("n_steps", "0"), ("n_steps", "x"), ("sigma", "2"),
                                       ("sigma", "nan"), ("aggregation", "max")])
def test_bad_values_name_the_parameter_and_the_range(key, text):
    with pytest.raises(ConfigError, match=f"bad value '{text}' for parameter '{key}'"):
        resolve_params(SPACE, owner="m", texts={key: text})


def test_typed_values_are_validated_too():
    with pytest.raises(ConfigError, match="parameter 'n_steps'"):
        resolve_params(SPACE, owner="m", values={"n_steps": 2.5})
    with pytest.raises(ConfigError, match="parameter 'n_steps'"):
        resolve_params(SPACE, owner="m", values={"n_steps": True})


def test_param_pairs():
    assert parse_param_pairs(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_param_pairs(["novalue"])


def test_params_file(tmp_path):
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"sigma": 0.3}))
    assert read_params_file(good) == {"sigma": 0.3}
    with pytest.raises(ConfigError, match="does not exist"):
        read_params_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_params_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        read_params_file(tmp_path / "list.json")
