"""Feature-pyramid outputs under keras-hub's names (``P2`` .. ``P5``).

Detection and segmentation heads written for keras-hub read a backbone's
``pyramid_outputs``, a dict ``{"P2": ..., "P3": ..., "P4": ..., "P5": ...}`` of the outputs
of its stages (keras-hub's ``FeaturePyramidBackbone``). keras_resnet's
:func:`~keras_resnet.feature_extractor` names the same tensors ``stage1`` .. ``stage4``;
these functions give them keras-hub's names::

    import keras_resnet as kr
    model = kr.ResNet50(include_top=False)
    kr.pyramid_outputs(model)          # {"P2": <KerasTensor 1/4>, ..., "P5": <1/32>}
    backbone = kr.feature_pyramid(model)
    backbone.pyramid_outputs           # the same dict, on a model that returns it
    backbone.feature_strides           # {"P2": 4, "P3": 8, "P4": 16, "P5": 32}

Stage ``s`` is ``P{s + 1}``, as keras-hub numbers its stacks (``P{stack index + 2}``):
on the ImageNet layout level ``Pk`` has stride ``2**k``. ``feature_strides`` gives each
output's true stride where that rule does not hold (dilated stages, ``output_stride=8``:
4, 8, 8, 8; the CIFAR layout: 1, 2, 4).
"""

from .models import ResNet


def _levels(model, stages):
    if not isinstance(model, ResNet):
        raise ValueError(f"pyramid outputs need a keras_resnet ResNet model; got {type(model).__name__}")
    n = model.num_stages
    stages = list(range(1, n + 1)) if stages is None else list(stages)
    for s in stages:
        if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= n:
            raise ValueError(f"stages={stages!r}: accepted stage numbers are 1..{n} (P2..P{n + 1})")
    return stages


def pyramid_outputs(model, stages=None):
    """``{"P2": tensor, ...}``: the symbolic outputs of ``model``'s stages in its own graph,
    named as keras-hub's ``FeaturePyramidBackbone.pyramid_outputs`` (stage ``s`` is
    ``P{s + 1}``). ``stages`` picks a subset, e.g. ``[2, 3, 4]`` for P3..P5."""
    stages = _levels(model, stages)
    names = model.stage_output_names()
    return {f"P{s + 1}": model.get_layer(names[s - 1]).output for s in stages}


def feature_pyramid(model, stages=None):
    """A ``keras.Model`` with ``model``'s input that returns ``{"P2": ..., "P5": ...}``.

    It carries ``pyramid_outputs`` (its outputs by level name, as keras-hub backbones do)
    and ``feature_strides`` (each level's stride: input size / feature map size)."""
    stages = _levels(model, stages)
    from ._compat import keras

    outputs = pyramid_outputs(model, stages)
    pyramid = keras.Model(model.input, outputs, name=f"{model.name}_pyramid")
    pyramid.pyramid_outputs = dict(outputs)
    strides = model.stage_strides()
    pyramid.feature_strides = {f"P{s + 1}": strides[s - 1] for s in stages}
    return pyramid
