"""Recipes as data: the named config files shipped in ``keras_resnet/recipes/``, config
files of the user's own (YAML or JSON), ``--set key=value`` overrides and a run's own
``run.json``, all turned into :class:`~.config.TrainConfig` settings.

A recipe file holds ``name``, ``title``, ``source``, ``published`` (the figure its source
reports for it: model, dataset, top-1, epochs, hardware, ``reproduced_here``) and
``settings``: :class:`~.config.TrainConfig` fields, ``model_kwargs`` among them (options of
the model's constructor, e.g. ``drop_path_rate``). A user's config file is either a flat
mapping of settings or a mapping with ``settings:`` (and optionally ``recipe:``, the shipped
recipe it starts from); a ``run.json`` gives the fully resolved settings of the run that
wrote it.

Nothing here imports TensorFlow: the command line reads recipes before it loads.
"""

import difflib
import inspect
import json
import os

RECIPE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
# Today's --preset names, kept as aliases of the recipes they always were.
ALIASES = {"digits": "digits", "cifar": "he2015-cifar", "imagenet": "he2015-imagenet"}
# A run.json's settings that describe where and how a run was written, not what it trained:
# a rerun from run.json takes them from its own command line.
NOT_RERUN = ("run_dir", "overwrite", "verbose", "init_from")
# The model constructor's options a config may set (``model.<name>=``); the rest are the
# trainer's (input shape, classes, preprocessing, head) or fixed by the named constructor.
TRAINER_MODEL_ARGS = ("input_shape", "classes", "classifier_activation", "include_preprocessing",
                      "preprocessing", "include_top", "weights", "input_tensor", "pooling", "name",
                      "stackwise_num_blocks", "stackwise_num_filters", "block", "kwargs")


class ConfigError(ValueError):
    """A recipe, config file or ``--set`` override that cannot be used (one line)."""


def _close(word, choices):
    near = difflib.get_close_matches(str(word), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def list_recipes():
    """The names of the shipped recipes, sorted."""
    return sorted(n[:-5] for n in os.listdir(RECIPE_DIR) if n.endswith(".yaml"))


def recipe_path(name):
    """The file of the shipped recipe ``name`` (or one of today's preset aliases)."""
    name = ALIASES.get(name, name)
    names = list_recipes()
    if name not in names:
        raise ConfigError(f"recipe {name!r} is not shipped{_close(name, names + list(ALIASES))}; "
                          f"accepted: {', '.join(names)} (aliases: "
                          + ", ".join(f"{a}={r}" for a, r in ALIASES.items() if a != r) + ")")
    return os.path.join(RECIPE_DIR, name + ".yaml")


def load_recipe(name):
    """The shipped recipe ``name`` as a dict (``name``, ``source``, ``published``,
    ``settings``, ...)."""
    doc = _read(recipe_path(name))
    doc["settings"] = dict(doc.get("settings") or {})
    return doc


def recipe_facts(name):
    """The shipped recipe's name, title, source, published figure and statement (what
    run.json's ``recipe`` records), or None."""
    if not name:
        return None
    try:
        doc = load_recipe(name)
    except ConfigError:
        return {"name": name}
    return {k: doc.get(k) for k in ("name", "title", "source", "published", "statement")
            if doc.get(k) is not None}


def recipe_settings(name):
    return load_recipe(name)["settings"]


def _read(path):
    """A YAML or JSON mapping from ``path`` (``.json``: JSON; anything else: YAML, a
    superset of JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        if path.endswith(".json"):
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - JSON or YAML syntax
        raise ConfigError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} holds {type(doc).__name__}; expected a mapping of settings "
                          "(YAML or JSON)")
    return doc


def is_run_json(doc):
    return isinstance(doc.get("config"), dict) and "status" in doc and "saved_models" in doc


def read_config_file(path, fields):
    """The settings of a config file: a run's ``run.json`` (its resolved ``config``,
    without where it was written), a mapping with ``settings:`` (and optionally
    ``recipe:``), or a flat mapping of settings. Keys are checked against ``fields`` (the
    names of TrainConfig's fields) by :func:`check_keys`."""
    doc = _read(os.fspath(path))
    if is_run_json(doc):
        values = {k: v for k, v in doc["config"].items() if k not in NOT_RERUN}
        data_dir = (doc.get("dataset_kwargs") or {}).get("data_dir")
        if values.get("data_dir") and data_dir:  # absolute: a rerun may start elsewhere
            values["data_dir"] = data_dir
        if values.get("iterations") is not None:  # the run's epochs derive from them
            values["epochs"] = None
        return check_keys(values, path, fields)
    if "settings" in doc:
        extra = sorted(set(doc) - {"settings", "recipe", "name", "title", "source", "published",
                                   "statement", "reference_replicas"})
        if extra:
            raise ConfigError(f"{path}: unknown top-level key {extra[0]!r}; accepted: settings, "
                              "recipe (and a recipe's name, title, source, published, statement)")
        values = dict(doc["settings"] or {})
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: 'settings' must be a mapping of settings")
        if doc.get("recipe") is not None:
            values.setdefault("recipe", doc["recipe"])
        return check_keys(values, path, fields)
    return check_keys(dict(doc), path, fields)


def check_keys(values, where, fields):
    """``values`` with every key in ``fields`` (TrainConfig's field names; ``model.X`` and
    ``model_kwargs.X`` folded into ``model_kwargs``); an unknown key is a one-line
    :class:`ConfigError` naming close matches."""
    fields = sorted(fields)
    out, model_kwargs = {}, {}
    for key, value in values.items():
        key = str(key)
        for prefix in ("model.", "model_kwargs."):
            if key.startswith(prefix):
                model_kwargs[key[len(prefix):]] = value
                break
        else:
            if key not in fields:
                raise ConfigError(f"{where}: unknown setting {key!r}{_close(key, fields)}; "
                                  "accepted: the fields of keras_resnet.training.TrainConfig "
                                  "(docs/recipes.md) or model.<constructor option>")
            if key == "model_kwargs":
                if value is not None and not isinstance(value, dict):
                    raise ConfigError(f"{where}: model_kwargs must be a mapping of the model "
                                      f"constructor's options; got {type(value).__name__}")
                model_kwargs = {**(value or {}), **model_kwargs}
            else:
                out[key] = value
    if model_kwargs:
        out["model_kwargs"] = model_kwargs
    return out


def parse_set(items, fields):
    """``--set key=value`` overrides (a list of strings) as settings; the value is read as
    YAML (``0.05``, ``true``, ``[0.5, 0.75]``, ``null``; anything else is a string)."""
    import yaml

    values = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set "
                              "model.drop_path_rate=0.05 or --set mixup_alpha=0.2")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        values[key.strip()] = value
    return check_keys(values, "--set", fields)


def model_options(name):
    """The options of model ``name``'s constructor a config may set (``model.X``): those of
    :class:`keras_resnet.models.ResNet` that the trainer and the named constructor leave
    free."""
    from ..models import ResNet
    from ..registry import resolve_model

    ctor = resolve_model(name)
    params = dict(inspect.signature(ResNet.__init__).parameters)
    try:
        own = inspect.signature(ctor).parameters
    except (TypeError, ValueError):
        own = {}
    fixed = set(getattr(ctor, "keywords", None) or {})  # functools.partial's own options
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in own.values()) or not own
    names = set(params) if accepts_any else set(own)
    return sorted(n for n in names - set(TRAINER_MODEL_ARGS) - fixed - {"self"})


def check_model_kwargs(name, kwargs):
    """Refuses a ``model_kwargs`` key that model ``name``'s constructor does not take, in
    one line with close matches."""
    if not kwargs:
        return
    if not isinstance(kwargs, dict):
        raise ConfigError(f"model_kwargs={kwargs!r}: expected a mapping of the model "
                          "constructor's options")
    accepted = model_options(name)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(f"model.{key} is not an option of {name}'s constructor"
                              f"{_close(key, accepted)}; accepted: "
                              + ", ".join(f"model.{a}" for a in accepted))
