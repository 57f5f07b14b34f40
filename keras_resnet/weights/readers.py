"""File readers: each turns a checkpoint file into a :class:`~.checkpoint.Checkpoint`.

:func:`read` picks the reader by file name (:data:`READERS`); HDF5 files are told apart
by their content (:func:`h5_kind`: Keras 3 positional ``layers/`` groups, or Keras 2
weights by layer name).
"""

import json
import os
import zipfile
import warnings

import h5py
import numpy as np

from .._compat import keras
from ..specs import MAX_CHECKPOINT_BYTES, MAX_CONFIG_BYTES, gib, check_tensor_bytes
from ..keras_file import load_model as load_keras_model
from .checkpoint import (Checkpoint, arrays_from_model, checkpoint_from_model, from_keras_applications_arrays,
                         from_torch_state_dict, resnet_config)
from .names import is_keras_applications_names

def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_keras_file(path, model=None):
    """Arrays by layer name from a ``.keras`` file (keras_resnet or keras.applications)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"weights={path!r} is not a .keras model file (not a zip archive); "
                         "expected a file written by model.save('name.keras')")
    try:
        source = load_keras_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise ValueError(f"weights={path!r} is not a loadable .keras model ({_first_line(e)})") from None
    return checkpoint_from_model(source, f"weights file {path!r}")


def _h5_classes(path):
    """(include_top, classes) of a keras_resnet ``.weights.h5`` file."""
    with h5py.File(path, "r") as f:
        group = f.get("layers")
        if group is None:
            raise ValueError(f"weights={path!r} is not a Keras 3 .weights.h5 file (no 'layers' group)")
        dense = [k for k in group if k == "dense" or k.startswith("dense_")]
        if not dense:
            return False, None
        kernel = group[dense[0]]["vars"]["0"]
        return True, int(kernel.shape[-1])


def h5_kind(path):
    """``"keras3"`` (positional ``layers/`` groups) or ``"legacy"`` (weights by layer name)."""
    if not h5py.is_hdf5(path):
        raise ValueError(f"weights={path!r} is not an HDF5 file (no HDF5 signature); expected Keras "
                         "weights saved with save_weights or a keras.applications .h5 file")
    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and "layer_names" not in f.attrs:
                return "keras3"
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return "legacy"
    except OSError as e:
        raise ValueError(f"weights={path!r} is not a readable HDF5 file ({e})") from None
    raise ValueError(f"weights={path!r} is an HDF5 file without Keras weights ('layers' group or 'layer_names')")


def _decode(s):
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


_H5_ORDER = {"kernel": 0, "gamma": 0, "bias": 1, "beta": 1, "moving_mean": 2, "moving_variance": 3}


def read_legacy_h5(path, model=None):
    """Arrays by layer name from a Keras 2 HDF5 weights file (``layer_names`` attribute).

    This is the format of the files keras.applications downloads and of
    ``model.save("x.h5")``; layers are stored by name, so keras.applications and
    keras_resnet names are both understood.
    """
    named, total = {}, 0
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in (_decode(n) for n in group.attrs["layer_names"]):
            g = group[layer]
            weight_names = [_decode(n) for n in g.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            values = []
            for w in weight_names:
                link = g.get(w, getlink=True)
                if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
                    raise ValueError(f"weights={path!r}: dataset '{layer}/{w}' is a link "
                                     f"({type(link).__name__}); an external or soft link is never "
                                     "followed (it would open another file); expected the arrays in the file")
                data = g[w]
                total += _claimed_bytes(data.shape, data.dtype.itemsize)
                check_tensor_bytes(_claimed_bytes(data.shape, data.dtype.itemsize),
                                   f"weights={path!r}: dataset '{layer}/{w}' of shape {tuple(data.shape)}",
                                   total)
                values.append((w, np.asarray(data)))
            # Order by role where the name says it (kernel, bias / gamma, beta, mean, var).
            roles = [w.rsplit("/", 1)[-1].split(":")[0] for w, _ in values]
            if all(r in _H5_ORDER for r in roles):
                values = [v for _, v in sorted(zip(roles, values), key=lambda t: _H5_ORDER[t[0]])]
            named[layer] = [v for _, v in values]
    if is_keras_applications_names(named):
        return from_keras_applications_arrays(named, f"weights file {path!r}")
    return Checkpoint(named)


def read_weights_h5(path, model=None):
    """Arrays by layer name from a ``.weights.h5`` / ``.h5`` file.

    A Keras 3 ``save_weights`` file stores weights by position, not by name, so a twin is
    built, the file is loaded into it, and its arrays are read by name: the
    keras.applications ResNet whose layers the file has (keras.applications models use
    ``Activation`` layers, keras_resnet models ``ReLU``), else a keras_resnet twin of
    ``model``. Keras 2 (by name) files go to :func:`read_legacy_h5`.
    """
    if h5_kind(path) == "legacy":
        return read_legacy_h5(path, model)
    app = _keras_applications_twin(path)
    if app is not None:
        try:
            _quiet_load(app, path)
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"weights={path!r} does not fit keras.applications {app.name}: {first}") from None
        return checkpoint_from_model(app, f"weights file {path!r}")
    own = resnet_config(model)
    if own is None:
        raise ValueError(
            f"weights={path!r}: this .weights.h5 file is not from a keras.applications ResNet and "
            "holds no architecture; load it into the keras_resnet model that saved it "
            "(weights=<path> in its constructor)"
        )
    include_top, classes = _h5_classes(path)
    config = dict(own, include_top=include_top, pooling=None, weights=None)
    if classes is not None:
        config["classes"] = classes
    twin = type(model).from_config(config)
    try:
        _quiet_load(twin, path)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"weights={path!r} does not fit this architecture ({model.name}): {first}"
        ) from None
    return Checkpoint(arrays_from_model(twin))


def _quiet_load(model, path):
    """``model.load_weights(path)``; a skipped object (which Keras only warns about) is an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
    if skipped:
        raise ValueError(skipped[0].strip().splitlines()[0])


def keras_applications_spec(path):
    """``(constructor name, kwargs)`` of the keras.applications ResNet whose layers a Keras 3
    ``.weights.h5`` file has, or None (read from the file's layer groups, nothing built)."""
    def kind(group_name):
        return group_name.rstrip("0123456789").rstrip("_")

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return None
        names = list(f["layers"])
        kinds = [kind(n) for n in names]
        # keras.applications ResNets use Activation layers; keras_resnet models use ReLU.
        if "activation" not in kinds or "re_lu" in kinds or "conv2d" not in names:
            return None
        convs = [n for n, k in zip(names, kinds) if k == "conv2d"]
        bns = [n for n, k in zip(names, kinds) if k == "batch_normalization"]
        dense = [n for n, k in zip(names, kinds) if k == "dense"]
        stem = f["layers"]["conv2d"]["vars"]["0"].shape
        classes = int(f["layers"][dense[0]]["vars"]["0"].shape[-1]) if dense else None
    total = (len(convs) - 5) / 3  # stem + 3 convs per block + 4 projections
    v2 = len(bns) == 1 + 3 * total  # pre-activation: post_bn + 3 BNs per block
    if not (v2 or len(bns) == len(convs)):
        return None
    depth = {16: 50, 33: 101, 50: 152}.get(total)
    if depth is None:
        return None
    kwargs = dict(weights=None, input_shape=(64, 64, int(stem[2])), include_top=bool(dense))
    if classes:
        kwargs["classes"] = classes
    return f"ResNet{depth}{'V2' if v2 else ''}", kwargs


def _keras_applications_twin(path):
    """The keras.applications ResNet (weights=None) a Keras 3 ``.weights.h5`` file fits."""
    spec = keras_applications_spec(path)
    if spec is None:
        return None
    name, kwargs = spec
    return getattr(keras.applications, name)(**kwargs)


def read_safetensors(path, model=None):
    """A torchvision/timm ``state_dict`` from a ``.safetensors`` file (PyTorch not needed)."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading .safetensors files needs the safetensors package: pip install 'keras-residual[weights]'"
        ) from None
    _check_safetensors_header(path)
    state = {}
    try:
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                try:
                    state[key] = f.get_tensor(key)
                except TypeError:  # bfloat16: NumPy has no such dtype
                    state[key] = None
    except Exception as e:  # safetensors raises its own error types for bad files
        raise ValueError(f"weights={path!r} is not a readable .safetensors file ({e})") from None
    if any(v is None for v in state.values()):
        state.update(_read_bf16(path, [k for k, v in state.items() if v is None]))
    return from_torch_state_dict(state, f"weights file {path!r}")


def _claimed_bytes(shape, itemsize):
    n = int(itemsize)
    for d in shape:
        n *= max(int(d), 0)
    return n


_SAFETENSORS_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                      "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _check_safetensors_header(path):
    """Refuses, from the header alone, a .safetensors file whose tensors claim more than the
    limits (nothing is read or allocated)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= 100 << 20:
            return  # not a safetensors header: safe_open names the problem
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return
    if not isinstance(header, dict):
        return
    total = 0
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            continue
        shape = info["shape"]
        if not all(isinstance(d, int) for d in shape):
            continue
        nbytes = _claimed_bytes(shape, _SAFETENSORS_SIZES.get(info.get("dtype"), 1))
        total += nbytes
        check_tensor_bytes(nbytes, f"weights={path!r}: key '{key[:120]}' of shape {shape}", total)


def _read_bf16(path, keys):
    """bfloat16 tensors of a .safetensors file as float32 (header + raw bytes)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for key in keys:
            info = header[key]
            if info["dtype"] != "BF16":
                raise ValueError(f"weights={path!r}: key '{key}' has unsupported dtype {info['dtype']}")
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2").astype("<u4") << 16
            out[key] = raw.view("<f4").reshape(info["shape"])
    return out


def read_torch(path, model=None):
    """A torchvision/timm ``state_dict`` saved with ``torch.save`` (needs PyTorch)."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"weights={path!r}: reading PyTorch .pth/.pt/.bin files needs PyTorch (pip install torch); "
            "a .safetensors file can be read without it"
        ) from None
    with open(path, "rb") as f:
        pickled = f.read(1) == b"\x80"  # torch.save's legacy format is a pickle
    if not (pickled or zipfile.is_zipfile(path)):
        raise ValueError(f"weights={path!r} is not a loadable PyTorch state_dict: neither torch.save's "
                         "zip archive nor a pickle; expected a state_dict saved with torch.save")
    _check_torch_claims(path, torch, zipped=not pickled)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"weights={path!r} is not a loadable PyTorch state_dict ({_first_line(e)})") from None
    return from_torch_state_dict(state, f"weights file {path!r}")


class _Inert:
    """What every global of a scanned pickle becomes: accepts any construction, state and
    items, and does nothing (no module is imported, nothing of the file's is called)."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


def _storage_claims(stream, claims):
    """Reads one pickle from ``stream`` with every global replaced by an :class:`_Inert`
    stand-in, recording each ``("storage", type, key, location, numel, ...)`` persistent id
    (how torch.save refers to a tensor's storage) in ``claims``: {key: (type name, numel)}."""
    import pickle

    stand_ins = {}

    class Scanner(pickle.Unpickler):
        def find_class(self, module, name):
            return stand_ins.setdefault((module, name), type(str(name)[:100], (_Inert,), {}))

        def persistent_load(self, pid):
            if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
                numel = pid[4]
                if isinstance(numel, int) and not isinstance(numel, bool):
                    claims[str(pid[2])[:100]] = (getattr(pid[1], "__name__", "?"), numel)
            return _Inert()

    Scanner(stream).load()


def _check_torch_claims(path, torch, zipped):
    """Refuses, before torch.load allocates anything, a ``.pt`` file whose storages claim more
    than the limits, or more bytes than the file holds (torch.save stores every storage
    whole, uncompressed): read from its pickle alone, with :func:`_storage_claims`."""
    import io
    import pickle

    claims = {}
    try:
        if zipped:
            with zipfile.ZipFile(path) as z:
                entry = next((i for i in z.infolist() if i.filename.endswith("data.pkl")), None)
                if entry is None:
                    return  # not torch.save's layout: torch.load names the problem
                if entry.file_size > MAX_CONFIG_BYTES:
                    raise ValueError(f"weights={path!r}: its pickle {entry.filename} claims "
                                     f"{entry.file_size:,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
                with z.open(entry) as f:
                    _storage_claims(io.BytesIO(f.read(MAX_CONFIG_BYTES + 1)), claims)
        else:
            with open(path, "rb") as f:
                for _ in range(4):  # magic number, protocol, system info, then the tensors
                    _storage_claims(f, claims)
    except ValueError as e:
        if str(e).startswith(f"weights={path!r}"):
            raise
        return  # not a pickle we can read: torch.load names the problem
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError, RecursionError):
        return
    total = 0
    for key, (kind, numel) in sorted(claims.items()):
        with warnings.catch_warnings():  # (torch's typed storages are deprecated, still named)
            warnings.simplefilter("ignore")
            dtype = getattr(getattr(torch, kind, None), "dtype", None) if kind.endswith("Storage") else None
        itemsize = getattr(dtype, "itemsize", 1) if dtype is not None else 1
        nbytes = max(numel, 0) * int(itemsize)
        total += nbytes
        check_tensor_bytes(nbytes, f"weights={path!r}: storage '{key}' ({kind}, {numel:,} elements)", total)
    size = os.path.getsize(path)
    if total > size:
        raise ValueError(f"weights={path!r}: its tensors claim {total:,} bytes but the file holds "
                         f"{size:,}; it is truncated or forged (torch.save stores every tensor whole)")


READERS = [
    (".keras", read_keras_file),
    (".weights.h5", read_weights_h5),
    (".h5", read_weights_h5),
    (".safetensors", read_safetensors),
    (".pth", read_torch),
    (".pt", read_torch),
    (".bin", read_torch),
]


def read(path, model=None):
    """Arrays by layer name from ``path``, with the reader its file name selects."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        if path in ("imagenet",) or not os.path.splitext(path)[1]:
            raise ValueError(
                f"weights={path!r} is not a file: keras_resnet downloads nothing. Import public "
                "weights from a local file: weights='resnet50.safetensors' (torchvision/timm "
                "state_dict; .pth/.pt need PyTorch) or a keras.applications .h5, or convert once "
                "with keras-resnet-convert SOURCE OUT.keras; see docs/weights.md")
        raise ValueError(f"weights={path!r}: no such file; pass None or the path of a local weights file")
    size = os.path.getsize(path)
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"weights={path!r} is {gib(size)}; at most {gib(MAX_CHECKPOINT_BYTES)} "
                         "per checkpoint is supported")
    for suffix, reader in READERS:
        if path.endswith(suffix):
            return reader(path, model)
    accepted = ", ".join(s for s, _ in READERS)
    raise ValueError(f"weights={path!r}: unknown file type; accepted: None or a file ending in {accepted}")


