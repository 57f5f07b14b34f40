"""Loading ``.keras`` files that someone else made: limits checked before Keras reads them.

A ``.keras`` file is a zip archive whose ``config.json`` Keras reads whole into memory and
whose architecture it then builds. :func:`load_model` first checks, from the archive's
directory and a bounded read of ``config.json``, that nothing claims more than the limits
of :mod:`keras_resnet.specs` (a 3 MB archive may declare a 3 GiB ``config.json``; a 386 KB
one a ResNet of 200,000 blocks), then loads with ``safe_mode=True`` (no Lambda code runs).
A ``ResNet`` config never opens a file it names (see ``ResNet.from_config``).
"""

import json
import zipfile

from .specs import (MAX_CHECKPOINT_BYTES, MAX_CONFIG_BYTES, gib, check_limits,
                    check_stage_count)

_MAX_NESTING = 200


def _resnet_configs(doc, depth=0):
    """The configs of every keras_resnet ``ResNet`` in a Keras config document."""
    if depth > _MAX_NESTING:
        raise ValueError(f"config.json nests more than {_MAX_NESTING} levels deep")
    if isinstance(doc, dict):
        if doc.get("class_name") == "ResNet" and isinstance(doc.get("config"), dict) and (
                str(doc.get("module", "")).startswith("keras_resnet")
                or str(doc.get("registered_name", "")).startswith("keras_resnet")):
            yield doc["config"]
        for value in doc.values():
            yield from _resnet_configs(value, depth + 1)
    elif isinstance(doc, list):
        for value in doc:
            yield from _resnet_configs(value, depth + 1)


def _ints(values):
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def check_config(doc):
    """Refuses a keras_resnet ``ResNet`` config past the model limits (nothing is built)."""
    for config in _resnet_configs(doc):
        for name in ("stackwise_num_blocks", "stackwise_num_filters", "stackwise_strides"):
            check_stage_count(name, config.get(name))
        blocks, filters = config.get("stackwise_num_blocks"), config.get("stackwise_num_filters")
        if _ints(blocks) and _ints(filters):
            scalars = {k: config.get(k) for k in ("stem_filters", "groups", "width_per_group", "classes")}
            scalars = {k: v for k, v in scalars.items() if isinstance(v, int) and not isinstance(v, bool)}
            check_limits(blocks, filters, **scalars)


def check_archive(path):
    """Refuses, in one line, a ``.keras`` archive whose ``config.json`` or contents claim more
    than the limits, or whose ResNet config is past the model limits. A file that is not a
    zip archive is left for the loader to name."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    with zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if total > MAX_CHECKPOINT_BYTES:
            raise ValueError(f"{path}: its contents claim {gib(total)} uncompressed; at most "
                             f"{gib(MAX_CHECKPOINT_BYTES)} is supported")
        config = next((i for i in infos if i.filename == "config.json"), None)
        if config is None:
            return
        if config.file_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: its config.json claims {config.file_size:,} bytes uncompressed; "
                             f"at most {MAX_CONFIG_BYTES:,} is supported")
        with zf.open(config) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # the declared size may lie: bounded either way
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: its config.json holds more than {MAX_CONFIG_BYTES:,} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: Keras names the problem
    try:
        check_config(doc)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_model(path, **kwargs):
    """``keras.saving.load_model(path, safe_mode=True, **kwargs)`` after :func:`check_archive`."""
    from ._compat import keras

    check_archive(path)
    kwargs.setdefault("safe_mode", True)
    return keras.saving.load_model(path, **kwargs)
