"""Unit tests of the Python SDK layer on CPython, against the bindings componentize-py
generates from sdk/wit. The host's imports only exist inside a component, so they are faked.
Run after `source sdk/toolchains`: python3 -m pytest sdk/python"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parent
TOOLCHAINS = Path(os.environ.get("WRT_TOOLCHAINS", Path.home() / ".cache/wrt/toolchains"))


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    bindings = tmp_path_factory.mktemp("bindings")
    subprocess.run(
        [TOOLCHAINS / "py/bin/componentize-py", "--wit-path", SDK.parent / "wit",
         "--world", "transformer", "bindings", bindings],
        check=True, capture_output=True,
    )
    sys.path[:0] = [str(bindings), str(SDK)]
    import wrt_sdk
    from wit_world.imports import config

    config.get = {"cols": " a, b ,,c "}.get
    return wrt_sdk


def test_config_lists_are_trimmed_and_drop_empty_items(sdk):
    assert sdk.Config().list("cols") == ["a", "b", "c"]
    assert sdk.Config().list("unset") is None
    assert sdk.Config().get("unset", "x") == "x"


def test_a_raised_transform_error_becomes_that_events_error(sdk):
    class Picky:
        def __init__(self, config):
            pass

        def process(self, event):
            if event == 2:
                raise sdk.TransformError("odd", "no twos")
            return []

    adapter = sdk.export_transform(Picky)()
    adapter.init()
    ok, err = adapter.process([1, 2])
    assert ok.value == []
    assert (err.value.code, err.value.message) == ("odd", "no twos")


def test_init_failures_refuse_the_component(sdk):
    class Broken:
        def __init__(self, config):
            raise ValueError("bad salt")

    with pytest.raises(sdk.Err) as refused:
        sdk.export_transform(Broken)().init()
    assert refused.value.value == "bad salt"


def test_type_names_are_the_wit_case_names(sdk):
    assert sdk.type_name(sdk.Value_Int(1)) == "int"
    assert sdk.type_name(sdk.Value_Timestamp(sdk.Timestamp(0, 0))) == "timestamp"
