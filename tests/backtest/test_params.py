"""--param key=value parsing: typed by the default, unknown names and bad values named."""

from __future__ import annotations

import backtrader as bt
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.params import param_defaults, parse_params


class P(bt.Strategy):
    params = (
        ("band", 0.10),
        ("sma_long", 200),
        ("use_hmm", False),
        ("caps", {"crisis": 0.2}),
        ("label", "x"),
    )


def test_values_take_the_type_of_the_default():
    got = parse_params(P, ["band=0.05", "sma_long=150", "use_hmm=true", 'caps={"crisis": 0.1}', "label=y"])
    assert got == {"band": 0.05, "sma_long": 150, "use_hmm": True, "caps": {"crisis": 0.1}, "label": "y"}
    assert isinstance(got["sma_long"], int) and isinstance(got["band"], float)


def test_defaults_are_read_from_the_params_tuple():
    assert param_defaults(P)["sma_long"] == 200


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("bnd=0.1", "Did you mean band"),
        ("band", "expected key=value"),
        ("sma_long=1.5", "expected an integer"),
        ("band=abc", "expected a finite number"),
        ("use_hmm=maybe", "expected true/false"),
        ("caps=[1", "expected JSON"),
    ],
)
def test_bad_items_name_the_param(item, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_params(P, [item])
