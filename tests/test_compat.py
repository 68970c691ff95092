"""rlpol._compat: each private API behaves as its fast path assumes, and each public fallback
gives the same result. A failure here after a dependency upgrade means the release removed or
changed a private name: update its probe and fast path in rlpol/_compat.py (nowhere else)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensordict
import torch
from onnx import TensorProto, helper
from tensordict import TensorDict
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
    set_interaction_type,
)

import rlpol
from rlpol import _compat
from rlpol._compat import ACTIVE, PRIVATE

PROBED_AT_IMPORT = [
    "torch.nn.Module._modules",
    "tensordict.TensorDict._get_str",
    "tensordict.TensorDict._set_str",
    "tensordict.TensorDict._new_unsafe",
    "tensordict.TensorDict._tensordict",
    "tensordict.TensorDictBase._has_names",
]

# The private names _compat owns, and the modules still touching them until their owners route
# them through _compat (the rollout engine's rewrite).
PRIVATE_NAME = re.compile(
    r"\._(get_str|set_str|new_unsafe|has_names|sess|iobinding|modules|draw_dist_sample|dist_sample)"
    r"\b|\._tensordict\b(?!\()"
)
NOT_YET_ROUTED: set[str] = set()


def _fast_path_message(name: str) -> str:
    return (
        f"{name} is not usable in tensordict {tensordict.__version__} / torch "
        f"{torch.__version__}: the release removed it "
        "or changed its signature; rlpol now takes the slower public fallback. Update its "
        "probe and fast path in rlpol/_compat.py."
    )


@pytest.mark.parametrize("name", PROBED_AT_IMPORT)
def test_private_names_probed_at_import_are_in_use(name):
    assert ACTIVE[name] == PRIVATE, _fast_path_message(name)


def _td() -> TensorDict:
    return TensorDict(
        observation=torch.randn(3, 4), nested=TensorDict(x=torch.zeros(3, 2), batch_size=[3]),
        batch_size=[3],
    )


def _assert_same_tensordict(got: TensorDict, want: TensorDict) -> None:
    assert type(got) is type(want)
    assert got.batch_size == want.batch_size and got.device == want.device
    assert set(got.keys(True, True)) == set(want.keys(True, True))
    for key in want.keys(True, True):
        assert got.get(key) is want.get(key), key


# -- tensordict: the private behaviour the fast paths assume -------------------------------


def test_get_str_returns_the_stored_tensor_and_the_default():
    td = _td()
    assert td._get_str("observation", None) is td.get("observation")
    assert td._get_str("nested", None) is td.get("nested")
    assert td._get_str("missing", None) is None


def test_set_str_stores_the_very_tensor_unchecked():
    td = _td()
    value = torch.ones(3, 2)
    td._set_str("action", value, inplace=False, validated=True)
    assert td.get("action") is value
    # validated=True skips the batch-size check: the caller's guarantee, as the fast path says
    td._set_str("unchecked", torch.ones(5), inplace=False, validated=True)
    assert td.get("unchecked").shape == (5,)


def test_new_unsafe_builds_the_same_tensordict_as_the_constructor():
    source = {"a": torch.zeros(3, 1), "n": {"b": torch.ones(3)}}
    got = TensorDict._new_unsafe(source, batch_size=torch.Size([3]), device=None)
    want = TensorDict(source, batch_size=[3], device=None)
    assert type(got.get("n")) is TensorDict
    assert torch.equal(got.get(("n", "b")), want.get(("n", "b")))
    assert got.get("a") is source["a"] and got.batch_size == want.batch_size


def test_tensordict_attribute_is_the_dict_of_entries():
    td = _td()
    assert type(td._tensordict) is dict
    assert list(td._tensordict) == list(td.keys())
    assert all(td._tensordict[key] is td.get(key) for key in td.keys())


def test_has_names_follows_the_names():
    td = _td()
    assert td._has_names() is False
    td.names = ["time"]
    assert td._has_names() is True


# -- tensordict: each public fallback gives the private path's result ----------------------


def test_str_getter_fallback_equals_the_private_getter():
    td = _td()
    for getter in (_compat._str_getter_private(td), _compat._str_getter_public(td)):
        assert getter("observation", None) is td.get("observation")
        assert getter("missing", None) is None
    assert _compat.str_getter is _compat._str_getter_private


def test_str_setter_fallback_equals_the_private_setter():
    value = torch.ones(3, 2)
    tds = _td(), _td()
    _compat._str_setter_private(tds[0])("action", value)
    _compat._str_setter_public(tds[1])("action", value)
    assert tds[0].get("action") is value and tds[1].get("action") is value
    assert set(tds[0].keys()) == set(tds[1].keys())


def test_new_tensordict_fallback_equals_new_unsafe():
    source = {"a": torch.zeros(3, 1), "n": {"b": torch.ones(3)}}
    got = _compat._new_tensordict_public(source, batch_size=torch.Size([3]), device=None)
    want = _compat.new_tensordict(source, batch_size=torch.Size([3]), device=None)
    assert _compat.new_tensordict == TensorDict._new_unsafe
    _assert_same_tensordict(got.exclude("n"), want.exclude("n"))
    assert torch.equal(got.get(("n", "b")), want.get(("n", "b")))


def test_entries_fallback_equals_the_private_dict():
    td = _td()
    got, want = _compat._entries_public(td), _compat.entries(td)
    assert want is td._tensordict
    assert got.keys() == want.keys() and all(got[key] is want[key] for key in want)


@pytest.mark.parametrize("names", [None, ["time"]])
def test_has_names_fallback_equals_the_private_call(names):
    td = _td()
    if names is not None:
        td.names = names
    assert _compat._has_names_public(td) == _compat.has_names(td) == (names is not None)


@pytest.mark.parametrize("appended", [False, True])
def test_sequence_modules_fallback_equals_the_private_registry(appended):
    first = TensorDictModule(lambda x: x + 1, in_keys=["x"], out_keys=["y"])
    sequence = TensorDictSequential(first, TensorDictModule(lambda y: y, ["y"], ["z"]))
    if appended:  # the registry is the live ModuleList, not a copy taken at construction
        sequence.module.append(TensorDictModule(lambda z: z, in_keys=["z"], out_keys=["w"]))
    private = list(_compat._sequence_modules_private(sequence))
    assert private == list(_compat._sequence_modules_public(sequence)) == list(sequence.module)
    assert private[0] is first and len(private) == 2 + appended
    assert _compat.sequence_modules is _compat._sequence_modules_private


# -- tensordict.nn: names and hooks that differ between 0.14 and 0.15 ---------------------


def _normal_sampler(**kwargs) -> ProbabilisticTensorDictModule:
    return ProbabilisticTensorDictModule(
        ["loc"], ["y"], distribution_class=torch.distributions.Normal,
        distribution_kwargs={"scale": 1.0}, **kwargs,
    )


def test_interaction_type_reads_set_interaction_type():
    assert _compat.interaction_type() is None
    with set_interaction_type(InteractionType.MODE):
        assert _compat.interaction_type() is InteractionType.MODE


def test_forward_draws_through_the_overridden_hook():
    @_compat.overrides_dist_sample
    class Halved(ProbabilisticTensorDictModule):
        def draw_dist_sample(self, dist, interaction_type=None, *, generator=None):
            return _compat.base_dist_sample(self, dist, interaction_type, generator=generator) / 2

    loc = torch.full((2, 1), 4.0)
    td = TensorDict(loc=loc, batch_size=[2])
    assert torch.equal(_normal_sampler()(td.clone())["y"], loc), "the base draw is the mode"
    halved = Halved(["loc"], ["y"], distribution_class=torch.distributions.Normal,
                    distribution_kwargs={"scale": 1.0})
    assert torch.equal(halved(td.clone())["y"], loc / 2), (
        f"tensordict {tensordict.__version__}'s forward no longer draws through "
        f"{_compat.DIST_SAMPLE_HOOK}: update _dist_sample_hook in rlpol/_compat.py"
    )


def test_sequence_log_prob_key_is_the_one_log_prob_key():
    sequence = ProbabilisticTensorDictSequential(
        TensorDictModule(torch.nn.Identity(), ["x"], ["loc"]), _normal_sampler(return_log_prob=True)
    )
    assert _compat.sequence_log_prob_key(sequence) == "y_log_prob"
    assert _compat._sequence_log_prob_key_from_keys(sequence) == "y_log_prob"


def test_hasattr_safe_turns_runtime_errors_into_missing_attributes():
    @_compat.hasattr_safe
    class Sampler(ProbabilisticTensorDictModule):
        pass

    sampler = Sampler(["loc"], ["y"], distribution_class=torch.distributions.Normal,
                      distribution_kwargs={"scale": 1.0})
    for name in dir(sampler):  # what torch.jit.trace does to every module it traces
        hasattr(sampler, name)
    assert not hasattr(sampler, "SAMPLE_LOG_PROB_KEY")


# -- onnxruntime ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    """A one-node graph: y = x + 1, float32 [batch, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_session_runner_private_path_equals_run(session):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    fast = _compat.session_runner(session)
    assert ACTIVE["onnxruntime.InferenceSession._sess"] == PRIVATE, (
        f"onnxruntime {ort.__version__} sessions lack _sess.run: update rlpol/_compat.py"
    )
    assert fast == session._sess.run
    got = fast(["y"], {"x": x}, None)
    want = _compat._session_runner_public(session)(["y"], {"x": x}, None)
    assert len(got) == len(want) == 1
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0], x + 1)


@pytest.mark.parametrize("path", ["private", "public"])
def test_bound_runner_writes_the_bound_outputs(session, path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.zeros_like(x)
    binding = session.io_binding()
    binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
    binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
    if path == "private":
        run = _compat.bound_runner(session, binding)
        assert ACTIVE["onnxruntime.IOBinding._iobinding"] == PRIVATE, (
            f"onnxruntime {ort.__version__} lacks _sess.run_with_iobinding or "
            "IOBinding._iobinding: update rlpol/_compat.py"
        )
        assert run.func == session._sess.run_with_iobinding and run.args[0] is binding._iobinding
    else:
        run = _compat._bound_runner_public(session, binding)
    run()
    np.testing.assert_array_equal(y, x + 1)
    x[...] = 10  # the binding reads the bound memory at each run
    run()
    np.testing.assert_array_equal(y, np.full_like(x, 11))


# -- the one home ----------------------------------------------------------------------------


def test_no_other_module_touches_the_private_names():
    package = Path(rlpol.__file__).parent
    touching = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "_compat.py" and PRIVATE_NAME.search(path.read_text())
    }
    assert touching <= NOT_YET_ROUTED, (
        f"{sorted(touching - NOT_YET_ROUTED)} touch private tensordict/onnxruntime names: "
        "go through rlpol._compat"
    )
