"""Every registered synthesizer follows ``.to(...)``: each parameter and buffer, and any
tensor or network held in a plain attribute (where a network escapes the module tree,
``.to(device)`` leaves it behind). No GPU here: the moves are to float64 and to ``meta``."""

from __future__ import annotations

import pytest
import torch
from diffusers import SchedulerMixin

from anomalysynth.synth import available_synthesizers, create_synthesizer
from anomalysynth.synth.sources import SourceMixture
from tests.conftest import anomalyany_kwargs, photo_batch

NAMES = available_synthesizers()

# Tensors that stay on the host by design, as (class, attribute): parameters are drawn on the
# host from CPU generators (the contract), so the tables they are drawn from are not moved.
HOST_SIDE = {(SourceMixture, "_probabilities")}
_ATOMS = (str, bytes, int, float, complex, bool, type(None), type, torch.dtype, torch.device, torch.Generator)


def build(name: str, request) -> torch.nn.Module:
    """Each registered synthesizer with its model: SDAS on a diffusion checkpoint (on-the-fly
    sampler), AnomalyAny on the tiny Stable Diffusion, AnomalyHybrid on its tiny generator."""
    kwargs: dict = {}
    if name == "sdas":
        kwargs = {"checkpoint": request.getfixturevalue("tiny_checkpoint"), "num_steps": 2}
    elif name == "anomalyany":
        kwargs = anomalyany_kwargs(request.getfixturevalue("tiny_sd"))
    elif name == "anomalyhybrid":
        from tests.gan.tiny_hybrid import contract_kwargs

        kwargs = contract_kwargs(request.getfixturevalue("tmp_path_factory"))
    return create_synthesizer(name, **kwargs)


def reachable(root: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.nn.Module]]:
    """Every tensor reachable from ``root`` through modules, plain attributes, lists and
    dicts (registered or not), and every module reachable but NOT registered, by path."""
    registered = {id(m) for m in root.modules()}
    tensors: dict[str, torch.Tensor] = {}
    hidden: dict[str, torch.nn.Module] = {}
    seen: set[int] = set()

    def visit(obj: object, path: str) -> None:
        if isinstance(obj, _ATOMS) or id(obj) in seen or isinstance(obj, SchedulerMixin):
            return  # diffusers schedulers keep their tables on the host and move them per call
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            tensors[path] = obj
            return
        if isinstance(obj, torch.nn.Module) and id(obj) not in registered:
            hidden[path] = obj
        if isinstance(obj, dict):
            for key, value in obj.items():
                visit(value, f"{path}[{key!r}]")
        elif isinstance(obj, list | tuple | set | frozenset):
            for i, value in enumerate(obj):
                visit(value, f"{path}[{i}]")
        elif hasattr(obj, "__dict__"):
            for key, value in vars(obj).items():
                if (type(obj), key) in HOST_SIDE:
                    continue
                if key in ("_parameters", "_buffers", "_modules") and isinstance(value, dict):
                    for sub, item in value.items():
                        visit(item, f"{path}.{sub}")
                else:
                    visit(value, f"{path}.{key}")

    visit(root, type(root).__name__)
    return tensors, hidden


@pytest.fixture(params=NAMES)
def synth(request):
    return build(request.param, request)


def test_no_network_or_tensor_hides_outside_the_module_tree(synth):
    tensors, hidden = reachable(synth)
    assert not hidden, f"modules outside the module tree: {sorted(hidden)}"
    registered = {id(t) for t in synth.parameters()} | {id(t) for t in synth.buffers()}
    loose = sorted(path for path, t in tensors.items() if id(t) not in registered)
    assert not loose, f"tensors in plain attributes (not moved by .to): {loose}"


def test_float64_reaches_every_tensor_and_synthesis_still_runs(synth):
    before = {path: t.dtype for path, t in reachable(synth)[0].items()}
    synth.to(torch.float64)
    after = reachable(synth)[0]
    assert set(after) == set(before)
    for path, tensor in after.items():
        expected = torch.float64 if before[path].is_floating_point else before[path]
        assert tensor.dtype == expected, f"{path}: {tensor.dtype}, expected {expected}"
    images = photo_batch(4, 3, size=32).double()
    out = synth(images, generator=[torch.Generator().manual_seed(i) for i in range(4)])
    assert out.image.dtype == torch.float64 and out.mask.dtype == torch.float64
    assert out.image.shape == images.shape and torch.isfinite(out.image).all()
    assert torch.equal(out.label, (out.mask.flatten(1).amax(1) > 0).long())
    assert out.label.sum() > 0


def test_meta_device_reaches_every_tensor(synth):
    synth.to("meta")
    off_meta = sorted(path for path, t in reachable(synth)[0].items() if t.device.type != "meta")
    assert not off_meta, f"left behind by .to('meta'): {off_meta}"


def test_the_checks_catch_a_network_held_in_a_plain_attribute():
    """How the SDAS sampler used to hide: a network inside a plain (non-module) part."""

    class Holder:
        def __init__(self) -> None:
            self.net = torch.nn.Linear(2, 2)

    class Synth(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.part = Holder()

    synth = Synth()
    tensors, hidden = reachable(synth)
    assert list(hidden) == ["Synth.part.net"]
    assert set(tensors) == {"Synth.part.net.weight", "Synth.part.net.bias"}
    synth.to(torch.float64)
    assert {t.dtype for t in reachable(synth)[0].values()} == {torch.float32}
