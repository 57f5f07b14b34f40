"""Growing a trained ResNet deeper without changing what it computes.

    import keras_resnet as kr
    deep = kr.deepen(trained_resnet20, depth=56)    # same predictions, 36 more layers

``deepen`` builds an ordinary keras_resnet model (the general :class:`~keras_resnet.ResNet`
constructor, from the source's ``get_config`` with more blocks per stage), copies every
weight of the source to the layer in the same place, and zero-initialises the inserted
blocks so that each computes the identity:

* post-activation blocks end in ``BN -> (+ shortcut) -> ReLU``: the last BN's gamma *and*
  beta are set to zero, so the branch outputs exactly zero both in inference and in a
  training-mode forward pass (batch statistics are multiplied by gamma = 0 too), and the
  block returns ``ReLU(x + 0) = x`` because its input ``x`` is itself the output of a ReLU;
* pre-activation blocks end in a convolution added to the raw input: its kernel (and bias)
  are set to zero, so the block returns ``x + 0``.

The inserted blocks' other weights keep their fresh initialisation (they are trainable and
fine-tuning makes them useful), and their BN moving statistics do not reach the output.

Where the blocks go: at the end of each stage, after the source's blocks, so the block that
strides or projects keeps its place. In models whose stages stride in their *last* block
(``stride_block="last"``, the keras.applications ResNetV2 layout) they go just before that
block instead (such a stage needs two source blocks to grow: its first changes the width,
its last strides). Source block ``b`` of stage ``s`` keeps its layer names
(``stage{s}_block{b}_*``) except that last-striding block, which becomes the stage's new last.

What cannot be the identity is refused: plain networks (no shortcut to carry the input),
option-C shortcuts (a projection on every block, including the inserted ones), fewer blocks
than the source, and a different family (stem, block type, widths, strides, ...).
"""

import os
import re

import numpy as np

from . import rundir
from ._compat import keras
from .keras_file import load_model as load_keras_model
from .models import CIFAR_DEPTHS, IMAGENET_DEPTHS, ResNet
from .specs import positive_list

# Settings that define a family: two models with equal values (and per-stage block counts
# that only grow) have the same layers in the same places.
FAMILY_KEYS = (
    "block", "stem", "stem_filters", "stackwise_num_filters", "stackwise_strides", "shortcut",
    "preact", "stride_on", "stride_block", "use_bias", "bn_epsilon", "residual", "include_top",
    "pooling", "classes",
)
# The head: what fine-tuning (a new classifier for other classes) may change.
HEAD_KEYS = ("include_top", "pooling", "classes")
HEAD_LAYERS = ("predictions",)

_BLOCK_NAME = re.compile(r"^stage(\d+)_block(\d+)_(.+)$")


def _layers_per_block(block):
    return 2 if block == "basic" else 3


def model_depth(config):
    """Weighted layers of a ResNet config: convs on the main path plus the classifier."""
    return _layers_per_block(config["block"]) * sum(config["stackwise_num_blocks"]) + 2


def check_source(model):
    if not isinstance(model, ResNet):
        raise ValueError(
            f"deepen needs a keras_resnet ResNet model; got {type(model).__name__}; accepted: "
            "models built by keras_resnet or loaded from its .keras files"
        )
    return model.get_config()


def blocks_for_depth(config, depth):
    """Blocks per stage of the ``depth``-layer model of ``config``'s family."""
    block = config["block"]
    filters, n_stages = config["stackwise_num_filters"], len(config["stackwise_num_blocks"])
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} is not supported; expected a positive integer")
    if config["stem"] == "imagenet" and filters == [64, 128, 256, 512]:
        same = sorted(d for d, (b, _) in IMAGENET_DEPTHS.items() if b == block)
        if depth in IMAGENET_DEPTHS and IMAGENET_DEPTHS[depth][0] == block:
            return list(IMAGENET_DEPTHS[depth][1])
        if depth in IMAGENET_DEPTHS:
            raise ValueError(
                f"depth={depth} is a different family: ImageNet ResNet-{depth} has "
                f"{IMAGENET_DEPTHS[depth][0]} blocks and this model {block} blocks; accepted "
                f"depths for {block} blocks: {same}"
            )
        raise ValueError(
            f"depth={depth} is not an ImageNet ResNet depth; accepted depths for {block} "
            f"blocks: {same} (or pass blocks_per_stage)"
        )
    per = _layers_per_block(block)
    if config["stem"] == "cifar" and n_stages == 3:
        if (depth - 2) % (3 * per) == 0 and depth > 2:
            return [(depth - 2) // (3 * per)] * 3
        example = list(CIFAR_DEPTHS[:4]) if block == "basic" else [164, 1001]
        raise ValueError(
            f"depth={depth} is not a depth of this family; accepted: {3 * per}n+2 for CIFAR "
            f"models with {block} blocks (e.g. {example})"
        )
    raise ValueError(
        f"depth={depth}: this model's layout ({config['stem']} stem, {n_stages} stages, "
        f"widths {filters}) has no depth table; pass blocks_per_stage instead"
    )


def same_head(source_config, target_config):
    """Whether two configs have the same classifier (or the same headless output)."""
    if source_config.get("include_top") != target_config.get("include_top"):
        return False
    keys = ("classes",) if source_config.get("include_top") else ("pooling",)
    return all(source_config.get(k) == target_config.get(k) for k in keys)


def check_growable(source_config, target_config, fine_tune=False):
    """Raises ``ValueError`` unless ``target_config`` is ``source_config`` grown (same
    family, at least as many blocks in every stage, inserted blocks that can be the
    identity). ``fine_tune``: the heads (``HEAD_KEYS``) may differ."""
    src_blocks = source_config["stackwise_num_blocks"]
    tgt_blocks = target_config["stackwise_num_blocks"]
    if len(src_blocks) != len(tgt_blocks):
        raise ValueError(
            f"blocks_per_stage={tgt_blocks} has {len(tgt_blocks)} stages and the source model "
            f"{len(src_blocks)}; accepted: one count per stage of the source ({src_blocks})"
        )
    keys = [k for k in FAMILY_KEYS if not (fine_tune and k in HEAD_KEYS)]
    diff = [k for k in keys if source_config.get(k) != target_config.get(k)]
    src_channels = (source_config.get("input_shape") or [None])[-1]
    tgt_channels = (target_config.get("input_shape") or [None])[-1]
    if src_channels != tgt_channels:
        diff.append("input channels")
    if diff:
        detail = ", ".join(
            f"{k}: {source_config.get(k)!r} -> {target_config.get(k)!r}" for k in diff
            if k != "input channels"
        ) or f"input channels: {src_channels} -> {tgt_channels}"
        if fine_tune:
            raise ValueError(
                f"cannot fine-tune from a different backbone ({detail}); accepted: a source "
                "with the same stem, block type, widths, strides, shortcut and options (its "
                "head may differ or be missing)")
        raise ValueError(
            f"cannot grow into a different family ({detail}); accepted: the same stem, block "
            "type, widths, strides, shortcut, classes and options with more blocks per stage"
        )
    fewer = [s for s, (a, b) in enumerate(zip(src_blocks, tgt_blocks), start=1) if b < a]
    if fewer:
        raise ValueError(
            f"blocks per stage {tgt_blocks} are fewer than the source's {src_blocks} in stage "
            f"{', '.join(map(str, fewer))}; accepted: at least the source's count in every stage"
        )
    if tgt_blocks != src_blocks:
        single = [s for s, (a, b) in enumerate(zip(src_blocks, tgt_blocks), start=1)
                  if a == 1 and b > 1]
        if source_config.get("stride_block") == "last" and single:
            raise ValueError(
                f"cannot grow stage {single[0]}: with stride_block='last' its one block both "
                "changes the width and strides, so no inserted block can be the identity; "
                "accepted: at least two source blocks in every stage that grows"
            )
        if not source_config["residual"]:
            raise ValueError(
                "cannot deepen a plain network (residual=False): an inserted block without a "
                "shortcut cannot compute the identity; accepted: residual networks"
            )
        if source_config["shortcut"] == "C":
            raise ValueError(
                "cannot deepen a model with option-C shortcuts: inserted blocks would project "
                "their shortcut, which is not the identity; accepted: shortcut 'A' or 'B'"
            )


def _target_name(source_config, target_blocks, stride_block):
    """``source name -> target name`` for block layers (other layers keep their names)."""
    src_blocks = source_config["stackwise_num_blocks"]

    def rename(name):
        m = _BLOCK_NAME.match(name)
        if not m:
            return name
        s, b, role = int(m.group(1)), int(m.group(2)), m.group(3)
        if stride_block == "last" and b == src_blocks[s - 1]:
            b = target_blocks[s - 1]
        return f"stage{s}_block{b}_{role}"

    return rename


def inserted_blocks(source_config, target_blocks):
    """``(stage, block)`` numbers (1-based) of the blocks growth inserts."""
    out = []
    last = source_config.get("stride_block") == "last"
    for s, (n_src, n_tgt) in enumerate(zip(source_config["stackwise_num_blocks"], target_blocks),
                                       start=1):
        first = n_src if last else n_src + 1
        out += [(s, b) for b in range(first, first + n_tgt - n_src)]
    return out


def grown_weights(source, target, fine_tune=False):
    """``{layer name: weights}`` for every weighted layer of ``target``: the source's
    weights in their places, and the inserted blocks' fresh weights with their residual
    branch zeroed (see the module docstring). ``target`` is not modified. ``fine_tune``:
    the source's head is dropped and ``target``'s (fresh) head kept."""
    src_config, tgt_config = check_source(source), check_source(target)
    check_growable(src_config, tgt_config, fine_tune)
    tgt_blocks = tgt_config["stackwise_num_blocks"]
    rename = _target_name(src_config, tgt_blocks, src_config["stride_block"])
    out = {}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights or (fine_tune and layer.name in HEAD_LAYERS):
            continue
        name = rename(layer.name)
        try:
            dest = target.get_layer(name)
        except ValueError as e:
            raise ValueError(f"layer {layer.name!r} of the source has no place {name!r} in the "
                             "grown model; accepted: keras_resnet ResNet models") from e
        shapes = [tuple(w.shape) for w in dest.weights]
        if shapes != [w.shape for w in weights]:
            raise ValueError(f"layer {layer.name!r}: weight shapes {[w.shape for w in weights]} "
                             f"do not fit {name!r} of the grown model ({shapes})")
        out[name] = weights
    last = _layers_per_block(src_config["block"])
    preact = src_config["preact"]
    for s, b in inserted_blocks(src_config, tgt_blocks):
        prefix = f"stage{s}_block{b}_"
        for layer in target.layers:
            if layer.name.startswith(prefix) and layer.weights:
                if layer.name.startswith(prefix + "shortcut"):
                    raise ValueError(f"inserted block {prefix[:-1]} has a projection shortcut; "
                                     "accepted: identity shortcuts in inserted blocks")
                out[layer.name] = [np.asarray(w) for w in layer.get_weights()]
        if preact:  # last conv (and its bias, if any) to zero
            out[f"{prefix}conv{last}"] = [np.zeros_like(w) for w in out[f"{prefix}conv{last}"]]
        else:  # last BN: gamma and beta to zero; moving statistics do not matter
            gamma, beta, mean, var = out[f"{prefix}bn{last}"]
            out[f"{prefix}bn{last}"] = [np.zeros_like(gamma), np.zeros_like(beta), mean, var]
    if fine_tune:  # the new head keeps its fresh weights
        out.update({layer.name: [np.asarray(w) for w in layer.get_weights()]
                    for layer in target.layers if layer.name in HEAD_LAYERS and layer.weights})
    missing = [layer.name for layer in target.layers if layer.weights and layer.name not in out]
    if missing:
        raise ValueError(f"the grown model's layers {missing[:3]} have no source; accepted: "
                         "keras_resnet ResNet models of the same family")
    return out


def grow_into(source, target, fine_tune=False):
    """Sets ``target``'s weights from ``source`` (see :func:`grown_weights`); returns
    ``target``. Works inside a ``tf.distribute`` strategy scope."""
    weights = grown_weights(source, target, fine_tune)
    for layer in target.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
    return target


def deepen(model, depth=None, blocks_per_stage=None):
    """A deeper copy of a keras_resnet ``model`` that computes the same function.

    Give the new ``depth`` (CIFAR 6n+2 for basic, 9n+2 for bottleneck blocks; ImageNet 18,
    34 / 50, 101, 152, 200) or ``blocks_per_stage`` (e.g. ``[9, 9, 9]``). Every weight of
    ``model`` is carried over; inserted blocks are appended to each stage and start as the
    identity, in inference and in training-mode forward passes. The result is an ordinary
    ``keras_resnet.ResNet`` (its config, ``.keras`` files and export work as for any other).

    Raises ``ValueError`` for plain networks, option-C shortcuts, fewer blocks than the
    source and a different family.
    """
    config = check_source(model)
    if (depth is None) == (blocks_per_stage is None):
        raise ValueError("deepen needs exactly one of depth= or blocks_per_stage=; got "
                         f"depth={depth!r}, blocks_per_stage={blocks_per_stage!r}")
    if blocks_per_stage is None:
        blocks_per_stage = blocks_for_depth(config, depth)
    blocks_per_stage = positive_list("blocks_per_stage", blocks_per_stage)
    target = dict(config, stackwise_num_blocks=list(blocks_per_stage))
    check_growable(config, target)
    old_depth, new_depth = model_depth(config), model_depth(target)
    name = config["name"]
    if name.endswith(str(old_depth)) and not name[: -len(str(old_depth))][-1:].isdigit():
        name = name[: -len(str(old_depth))] + str(new_depth)
    target["name"] = name
    return grow_into(model, ResNet.from_config(target))


# ----------------------------------------------------------------------------------------
# train.py --init-from


def source_path(run_or_keras):
    """The ``.keras`` file ``--init-from`` names: the file itself, or a run directory's
    ``last.keras`` (the finished model; ``best.keras`` when there is no ``last.keras``)."""
    return rundir.model_file(str(run_or_keras), prefer=rundir.LAST, label="init_from=")


def load_source(run_or_keras):
    """``(model, path)``: the keras_resnet model ``--init-from`` starts from, as saved."""
    path = source_path(run_or_keras)
    try:
        model = load_keras_model(path, safe_mode=True)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"init_from: could not load {path!r} as a Keras model ({reason}); "
                         "accepted: a .keras file saved by keras_resnet") from e
    if not isinstance(model, ResNet):
        raise ValueError(f"init_from: {path!r} holds a {type(model).__name__}; accepted: a "
                         "keras_resnet ResNet model")
    return model, path


def init_from_source(source, path, model, spec, log=None):
    """Copies ``source`` (loaded from ``path``) into ``model``, deepened when ``model`` has
    more blocks; returns what ``run.json`` records about it.

    When the heads differ (other classes, or a source without a classifier) this is
    fine-tuning: the backbone's weights are copied, the source's head is dropped and
    ``model``'s fresh head kept, and ``log`` gets one line saying so."""
    src, tgt = source.get_config(), model.get_config()
    fine_tune = not same_head(src, tgt)
    try:
        grow_into(source, model, fine_tune=fine_tune)
    except ValueError as e:
        raise ValueError(f"init_from={spec!r}: {e}") from None
    info = dict(argument=str(spec), path=os.path.abspath(path),
                model=src["name"], depth=model_depth(src),
                blocks_per_stage=src["stackwise_num_blocks"],
                grown_to_depth=model_depth(tgt),
                inserted_blocks=len(inserted_blocks(src, tgt["stackwise_num_blocks"])))
    if fine_tune:
        head = (f"its {src['classes']}-class head dropped" if src["include_top"]
                else "it has no head")
        info.update(fine_tune=True, source_head=describe_head(src), head=describe_head(tgt))
        if log is not None:
            log(f"fine-tuning from {path}: backbone of {src['name']} kept ({head}), new "
                f"{tgt['classes']}-class head")
    return info


def describe_head(config):
    """``"1000 classes"``, ``"none (pooling avg)"``: a config's head in words."""
    if config.get("include_top"):
        return f"{config['classes']} classes"
    return f"none (pooling {config.get('pooling')})"
