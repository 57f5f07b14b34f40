"""The model registry: every model keras_resnet builds by name, listed once.

    import keras_resnet as kr
    kr.list_models("*resnet50*")      # ['ECAResNet50D', ..., 'resnet50', ...]
    kr.resolve_model("ResNet50D")     # the constructor; kr.resolve_model("resnet56")(classes=10)

Two kinds of names:

* the named constructors (:data:`MODELS`): the papers' models and the variants beyond
  them, each written out in :mod:`keras_resnet.models` and registered in its tables
  ``NAMED_MODELS`` and ``VARIANT_MODELS``;
* the generic family names (:data:`FAMILIES`): ``resnet<depth>``, ``plain<depth>`` (the
  same network without shortcuts) and ``preactresnet<depth>``, for any ImageNet depth
  (18, 34, 50, 101, 152, 200) or CIFAR depth 6n+2 (``resnet8``, ``resnet20``, ...;
  ``<name>cifar`` forces the CIFAR layout).

Any residual name takes a shortcut option as a suffix, ``-shortcut-a``, ``-shortcut-b`` or
``-shortcut-c`` (He et al. 2015, section 3.3: A zero-pads, B projects where the dimensions
change, C projects everywhere): ``resnet20-shortcut-c``, ``ResNet50-shortcut-c``. Such
names are accepted, not listed; the shortcuts experiment trains them.

Names are matched without regard to case, ``-`` or ``_`` (``resnext50-32x4d`` is
``ResNeXt50_32x4d``). Every name lookup in keras_resnet goes through :func:`resolve_model`:
the training command's ``--model`` (and ``--init-from`` deepening, which builds the
``--model`` network), the experiments and the Python API.
"""

import difflib
import fnmatch
import functools
import re

from . import models
from .specs import CIFAR_DEPTHS, IMAGENET_DEPTHS, check_depth

# The named constructors are registered where they are written, in the two tables at the
# end of keras_resnet.models (the papers' models, then the variants); this is their union.
PAPER_MODELS = models.NAMED_MODELS
VARIANT_MODELS = models.VARIANT_MODELS
MODELS = {**PAPER_MODELS, **VARIANT_MODELS}

# Generic family names: prefix -> the family's options.
FAMILIES = {
    "resnet": dict(plain=False, preact=False),
    "plain": dict(plain=True, preact=False),
    "preactresnet": dict(plain=False, preact=True),
}
_FAMILY = re.compile(r"(%s)(\d+)(cifar)?" % "|".join(sorted(FAMILIES, key=len, reverse=True)))
_SHORTCUT = re.compile(r"(.+)shortcut([abc])")


class UnknownModelError(ValueError):
    """A model name that is not in the registry (a ``ValueError``)."""


def _key(name):
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(n): f for n, f in MODELS.items()}


def _family(key):
    """The family constructor for ``key`` (``resnet8``, ``plain56``, ``resnet50``, ...), or None."""
    m = _FAMILY.fullmatch(key)
    if not m:
        return None
    depth, options = check_depth(int(m.group(2))), FAMILIES[m.group(1)]  # resnet600002: refused
    if depth in IMAGENET_DEPTHS and not m.group(3):
        return functools.partial(models.resnet_imagenet, depth, **options)
    if depth >= 8 and (depth - 2) % 6 == 0:
        return functools.partial(models.resnet_cifar, depth, **options)
    return None


# Family names at table depths that are not listed, because they cannot train: plain1202's
# float32 gradient overflows in its first step (measured: about 1.18x per layer backwards,
# 1.18^1,200 ~ 1e86 > 3.4e38; docs/layout.md). It still builds by name, for experiments.
UNLISTED = frozenset({"plain1202"})


def family_names():
    """The family names at the table depths (``resnet18`` ... ``resnet200``, ``resnet20`` ...
    ``resnet1202``, the same for ``plain`` and ``preactresnet``), but for :data:`UNLISTED`
    (``plain1202``, which cannot train in float32). Any other 6n+2 depth (``resnet8``,
    ``plain14``, ``plain1202``, ...) is accepted too."""
    depths = sorted(set(IMAGENET_DEPTHS) | set(CIFAR_DEPTHS))
    return [f"{prefix}{d}" for prefix in FAMILIES for d in depths if f"{prefix}{d}" not in UNLISTED]


def _aliases():
    """Family names that are another spelling of a named constructor (``resnet50`` is
    ``ResNet50``, ``resnet20`` is ``ResNet20CIFAR``)."""
    return {n for n in family_names() if _key(n) in _BY_KEY or _key(n) + "cifar" in _BY_KEY}


def list_models(filter=None):
    """The models :func:`resolve_model` builds, each once, sorted: every named constructor,
    then the family names at the table depths that no constructor has (``plain20``,
    ``preactresnet56``, ...; ``resnet50`` is listed as ``ResNet50``). ``filter`` is an
    ``fnmatch`` pattern matched without regard to case (``"*50*"``, ``"resnext*"``), as in
    ``timm.list_models``."""
    aliases = _aliases()
    names = sorted(MODELS, key=str.lower) + [n for n in family_names() if n not in aliases]
    if filter:
        pattern = filter.lower()
        names = [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern)]
    return names


def resolve_model(name):
    """The constructor of the model ``name``: a named constructor (``ResNet50D``,
    ``ResNeXt50_32x4d``, ``ResNet56CIFAR``, ...) or a family name (``resnet20``,
    ``resnet50``, ``plain56``, ``preactresnet110``, ``resnet8``). Case, ``-`` and ``_`` do
    not matter; CIFAR and ImageNet depths never clash, so ``resnet20`` is CIFAR ResNet-20
    and ``resnet50`` ImageNet ResNet-50. The constructor takes ``ResNet``'s keyword
    arguments (``input_shape``, ``classes``, ...).

    Raises :class:`UnknownModelError` (a ``ValueError``) naming the close matches.
    """
    if isinstance(name, str):
        key = _key(name)
        m = _SHORTCUT.fullmatch(key)
        if m and key not in _BY_KEY:
            return _with_shortcut(name, m.group(1), m.group(2).upper())
        if key in _BY_KEY:
            return _BY_KEY[key]
        if key + "cifar" in _BY_KEY:
            return _BY_KEY[key + "cifar"]
        built = _family(key)
        if built is not None:
            return built
    raise UnknownModelError(_unknown(name))


# Plain networks (no shortcuts) of this many layers or more: recommended_settings() gives
# them AdamW instead of the recipe's SGD.
DEEP_PLAIN_LAYERS = 100


def recommended_settings(name):
    """The training settings the registry recommends for the model ``name`` over the
    recipe's, as ``TrainConfig`` fields (the training command's flags: ``optimizer`` is
    ``--optimizer``); ``{}`` for most models.

    Plain networks of :data:`DEEP_PLAIN_LAYERS` layers or more (``plain101``, ``plain110``,
    ``plain152``, ``plain200``, ``plain1202``) get ``{"optimizer": "adamw", "lr": 1e-3}``.
    Without shortcuts, the gradient of a batch-normalized network grows exponentially with
    depth at initialization (Yang et al. 2019, "A Mean Field Theory of Batch
    Normalization"). Measured at initialization (32x32 inputs, batch 4), the first conv's
    gradient relative to its weights is 11 times the last conv's in plain20, 3e3 times in
    plain56, 5e7 times in plain110 and 2e10 times in plain101. SGD's step is the learning
    rate times the gradient: even at lr 1e-4, plain101's first weights grow by orders of
    magnitude in 8 steps, the BatchNormalization moving statistics (which inference uses)
    trail them, and the test loss is NaN. Neither a lower rate nor a warm-up bridges a
    factor of 1e10 between the first and the last layers. AdamW's step is about the
    learning rate for every weight, whatever its gradient's scale, and plain101, plain152 and
    plain200 train with it; 1e-3 is Adam's own default rate (Kingma and Ba, 2015). plain1202
    does not train with any setting: its float32 gradient, growing about 1.18 times per
    layer backwards, overflows in the first step (measured; docs/layout.md). He et al.
    (2015) trained plain networks of 18 to 56 layers only.

    ``name`` is resolved as :func:`resolve_model` resolves it (an unknown name is refused).
    """
    resolve_model(name)
    m = _FAMILY.fullmatch(_key(name))
    if m and FAMILIES[m.group(1)]["plain"] and int(m.group(2)) >= DEEP_PLAIN_LAYERS:
        return {"optimizer": "adamw", "lr": 1e-3}
    return {}


def _with_shortcut(name, base, option):
    """The constructor of ``base`` (a key) with ``shortcut=option``."""
    family = _FAMILY.fullmatch(base)
    if family and FAMILIES[family.group(1)]["plain"]:
        raise UnknownModelError(
            f"model={name!r} is not supported: a plain network has no shortcuts; accepted: a "
            f"residual name with -shortcut-{option.lower()} (e.g. resnet20-shortcut-"
            f"{option.lower()}), or the plain name alone")
    try:
        build = resolve_model(base)
    except UnknownModelError:
        raise UnknownModelError(_unknown(name)) from None
    return functools.partial(build, shortcut=option)


def _unknown(name):
    names = list_models()
    close = []
    if isinstance(name, str):
        by_key = {}
        for n in names:
            by_key.setdefault(_key(n), n)
        close = [by_key[k] for k in difflib.get_close_matches(_key(name), list(by_key), n=4, cutoff=0.6)]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (f"model={name!r} is not supported; {hint}accepted: a constructor name "
            f"({', '.join(list(MODELS)[:3])}, ...), or resnet<depth>, plain<depth>, "
            "preactresnet<depth> for an ImageNet depth (18, 34, 50, 101, 152, 200) or a CIFAR "
            "depth 6n+2 (8, 20, 32, 44, 56, 110, ...); keras_resnet.list_models() lists them")


__all__ = ["MODELS", "PAPER_MODELS", "VARIANT_MODELS", "FAMILIES", "DEEP_PLAIN_LAYERS",
           "UnknownModelError", "family_names", "list_models", "recommended_settings",
           "resolve_model"]
