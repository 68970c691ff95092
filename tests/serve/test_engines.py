"""``rlpol.serve.engines.run_engine``: the dispatch's errors, before any engine starts."""

from __future__ import annotations

import sys

import pytest

from rlpol.errors import ServeError
from rlpol.serve.app import ServeConfig
from rlpol.serve.engines import ENGINES, EngineOptions, run_engine


def _run(engine: str, options: EngineOptions | None = None) -> None:
    run_engine(engine, ["model.onnx"], host="127.0.0.1", port=8000, config=ServeConfig(),
               trust_code=False, options=options or EngineOptions())  # fmt: skip


@pytest.mark.parametrize(("engine", "dependency"), [("triton", "pytriton"), ("ray", "ray")])
def test_an_engine_without_its_extra_names_the_install_command(monkeypatch, engine, dependency):
    # a None entry in sys.modules makes `import <dependency>` (and its submodules, already
    # imported or not) fail as if it were not installed; the engine's modules import afresh
    for name in [*sys.modules, dependency]:
        if name == dependency or name.startswith(dependency + "."):
            monkeypatch.setitem(sys.modules, name, None)
        elif name.startswith(ENGINES[engine][0]) or name.startswith("rlpol.serve.engines._"):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ServeError) as error:
        _run(engine)
    assert str(error.value).startswith(f"--engine {engine} needs the {engine} extra (")
    assert f"install it with `pip install 'rlpol[{engine}]'`" in str(error.value)


def test_an_unknown_engine_lists_the_known_ones():
    with pytest.raises(ServeError, match=r"unknown engine 'kserve'; choose one of \['embedded', "
                                         r"'ray', 'triton'\]"):  # fmt: skip
        _run("kserve")


@pytest.mark.parametrize(("engine", "options", "flag", "owner"), [
    ("ray", EngineOptions(grpc_port=8001), "--grpc-port", "triton"),
    ("triton", EngineOptions(replicas=2), "--replicas", "ray"),
    ("embedded", EngineOptions(address="10.0.0.1:6379"), "--address", "ray"),
])  # fmt: skip
def test_an_option_of_another_engine_is_refused(engine, options, flag, owner):
    with pytest.raises(ServeError) as error:
        _run(engine, options)
    assert str(error.value) == (f"{flag} is an option of --engine {owner}, not of --engine "
                                f"{engine}; drop it or add --engine {owner}")  # fmt: skip
