"""Every third-party call the full world makes, checked against the INSTALLED library's signature.

controlnet-aux 0.0.10's detectors take no ``revision``; diffusers' ``from_pretrained`` swallows any
keyword into ``**kwargs`` and ignores the ones it does not know (a misspelt ``variant`` would
silently download the float32 files). So the full-world paths run here with a recorder on the
library entry points, and each recorded call must bind to the signature, with every keyword that
lands in ``**kwargs`` one the function (or the helper it hands ``**kwargs`` to) actually reads.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import diffusers
import huggingface_hub
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
from animatelcm_helpers import control, detectors, pipelines, svd

# where a function hands its **kwargs on: the keywords those read count as accepted too
FORWARDS = {
    "StableDiffusionLoraLoaderMixin.load_lora_weights": [StableDiffusionLoraLoaderMixin.lora_state_dict],
}


def read_keywords(fn) -> set[str]:
    """The names a function reads out of its ``**kwargs`` (``kwargs.pop("x"`` / ``kwargs.get("x"``)."""
    src = inspect.getsource(inspect.unwrap(fn))
    return set(re.findall(r"kwargs\.(?:pop|get)\(\s*[\"'](\w+)[\"']", src))


def problems(name: str, fn, args: tuple, kwargs: dict, owner=None) -> list[str]:
    """What is wrong with the call ``fn(*args, **kwargs)`` (``owner``: the class a classmethod was called on)."""
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as err:
        return [f"{name}: {err}"]
    var_kw = next((p.name for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    extra = set(bound.arguments.get(var_kw, {})) if var_kw else set()
    accepted = read_keywords(fn)
    for helper in FORWARDS.get(name, []):
        accepted |= read_keywords(helper) | set(inspect.signature(helper).parameters)
    if owner is not None and issubclass(owner, DiffusionPipeline):  # components go to the pipeline's __init__
        accepted |= set(inspect.signature(owner.__init__).parameters)
    return [f"{name}: {k!r} is not a keyword the installed {fn.__module__} reads" for k in sorted(extra - accepted)]


def test_the_checker_catches_the_bugs_it_is_for():
    from controlnet_aux import OpenposeDetector

    # the bug issue 20 found: controlnet-aux's detectors take no revision
    assert "unexpected keyword argument 'revision'" in problems(
        "OpenposeDetector.from_pretrained", OpenposeDetector.from_pretrained.__func__,
        (OpenposeDetector, "lllyasviel/Annotators"), {"revision": "main"})[0]
    # a misspelt keyword that diffusers would swallow
    assert problems("ModelMixin.from_pretrained", ModelMixin.from_pretrained.__func__, (ModelMixin, "x"),
                    {"varient": "fp16"}, ModelMixin) == [
        "ModelMixin.from_pretrained: 'varient' is not a keyword the installed diffusers.models.modeling_utils reads"]
    assert problems("ModelMixin.from_pretrained", ModelMixin.from_pretrained.__func__, (ModelMixin, "x"),
                    {"variant": "fp16", "dtype": None}, ModelMixin) == []


@pytest.fixture(scope="module")
def recorded(full_offline):
    """Run the full world's loading and sampling paths with every library entry point recorded."""
    calls = []
    patch = pytest.MonkeyPatch()

    def record_classmethod(cls, attr):
        original = getattr(cls, attr).__func__

        def wrapper(owner, *args, **kwargs):
            calls.append((f"{cls.__name__}.{attr}", original, (owner, *args), kwargs, owner))
            return original(owner, *args, **kwargs)

        patch.setattr(cls, attr, classmethod(wrapper))

    def record_method(cls, attr):
        original = getattr(cls, attr)

        def wrapper(self, *args, **kwargs):
            calls.append((f"{cls.__name__}.{attr}", original, (self, *args), kwargs, None))
            return original(self, *args, **kwargs)

        patch.setattr(cls, attr, wrapper)

    def record_function(module, attr, where):
        original = getattr(module, attr)

        def wrapper(*args, **kwargs):
            calls.append((attr, original, args, kwargs, None))
            return original(*args, **kwargs)

        for namespace in where:
            patch.setattr(namespace, attr, wrapper)

    from animatelcm_helpers import annotators, hub

    record_classmethod(ModelMixin, "from_pretrained")
    record_classmethod(DiffusionPipeline, "from_pretrained")
    record_classmethod(DiffusionPipeline, "from_pipe")
    record_method(StableDiffusionLoraLoaderMixin, "load_lora_weights")
    for cls in (diffusers.AnimateDiffPipeline, diffusers.AnimateDiffControlNetPipeline,
                diffusers.AnimateDiffVideoToVideoPipeline, diffusers.StableVideoDiffusionPipeline):
        record_method(cls, "__call__")
    record_function(huggingface_hub, "hf_hub_download", [hub, annotators])
    try:
        pipe = pipelines.load_t2v("animatelcm")
        pipelines.use_motion_lora(pipe, "pan-left")
        pipelines.generate(pipe, "a cat", frames=4, height=64, width=64, steps=1)
        video = np.zeros((4, 64, 64, 3), np.uint8)
        maps = detectors.detect(video, "hed")
        cpipe = control.controlnet_pipeline(control.load_controlnet("canny"), pipe=pipe)
        control.generate_controlled(cpipe, "a cat", maps, steps=1)
        control.video_to_video(control.video_to_video_pipeline(pipe=pipe), video, "a cat", strength=1.0, steps=1)
        spipe = svd.load_svd()
        svd.generate_svd(spipe, video[0], steps=1, frames=4, height=64, width=64)
    finally:
        patch.undo()
    return calls


def test_every_recorded_call_fits_the_installed_signature(recorded):
    names = {name for name, *_ in recorded}
    assert {"ModelMixin.from_pretrained", "DiffusionPipeline.from_pretrained", "DiffusionPipeline.from_pipe",
            "StableDiffusionLoraLoaderMixin.load_lora_weights", "hf_hub_download", "AnimateDiffPipeline.__call__",
            "AnimateDiffControlNetPipeline.__call__", "AnimateDiffVideoToVideoPipeline.__call__",
            "StableVideoDiffusionPipeline.__call__"} <= names
    wrong = [p for name, fn, args, kwargs, owner in recorded for p in problems(name, fn, args, kwargs, owner)]
    assert wrong == []
