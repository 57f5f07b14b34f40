"""Loading and importing weights into keras_resnet models.

``load_weights(model, path)`` is what ``weights=<path>`` in the constructors calls. Every
reader turns a file into ``{layer name: [arrays in Keras order]}``; one assignment step
then checks the whole set against the model (missing, unexpected and mis-shaped entries,
a classifier whose class count differs) and only then writes, so a mismatch never leaves
a model partly loaded.

Readers by file name:

* ``*.keras``: a saved Keras model (loaded with ``safe_mode=True``): a keras_resnet model,
  or a ``keras.applications`` ResNet50/101/152 or ResNet50V2/101V2/152V2.
* ``*.weights.h5`` / ``*.h5``: weights saved by ``save_weights`` from a keras_resnet model
  of the same architecture, or a ``keras.applications`` ResNet weights file (the HDF5
  files ``keras.applications`` downloads, ``model.save("x.h5")``, or Keras 3
  ``save_weights``).
* ``*.safetensors``: a PyTorch ``state_dict`` with torchvision's parameter names
  (``conv1.weight``, ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``,
  ``fc.weight``, ...), which timm's ResNets share; also torchvision's ResNeXt and Wide
  ResNets (grouped or wider shapes) and timm's ResNet-D (deep stem ``conv1.0/1/3/4/6``,
  shortcuts ``downsample.1`` conv / ``downsample.2`` BN), SE (``se.fc1``, ``se.fc2``) and
  ECA (``se.conv``) variants. Read with the ``safetensors`` package;
  PyTorch is not needed.
* ``*.pth``, ``*.pt``, ``*.bin``: the same ``state_dict`` saved with ``torch.save``
  (needs PyTorch installed).

Layouts. A checkpoint fixes the architecture it fits, and loading checks the model
against it before any weight is written:

* torchvision/timm: ``ResNet18``..``ResNet152`` as built by default (stride on the 3x3
  conv, no conv biases, BN epsilon 1e-5, projection shortcuts, symmetric padding).
  Convolution kernels go from OIHW to HWIO and the classifier matrix is transposed.
* keras.applications ResNet (v1): stride on the first 1x1 conv, conv biases, BN epsilon
  1.001e-5 -- ``stride_on="1x1", use_bias=True, bn_epsilon=1.001e-5``.
* keras.applications ResNetV2: full pre-activation, stride in the last block of stages
  1-3 -- ``preact=True, stride_block="last", stackwise_strides=[2, 2, 2, 1],
  use_bias="unnormalized", bn_epsilon=1.001e-5``.

:func:`checkpoint_options` returns those options for a file, :func:`convert` builds the
matching model with the weights in it, and ``python -m keras_resnet.weights SOURCE
OUT.keras`` (``keras-resnet-convert``) writes it as a ``.keras`` file. ``PREPROCESSING``
holds the input scaling each source was trained with, in keras_resnet's
``{"scale", "offset"}`` convention.

Where each job lives: :mod:`.names` (name maps), :mod:`.checkpoint` (what a reader
returns, the layout arrays imply), :mod:`.readers` (one reader per file kind, HDF5
format detection), :mod:`.loading` (layout check, all-or-nothing assignment,
:func:`load_weights`), :mod:`.converter` (:func:`convert`), :mod:`.command` (the
``keras-resnet-convert`` command). Everything but the converter sits below :mod:`keras_resnet.models`, which uses
:func:`load_weights`; the converter builds models, so it is imported on first use.
"""


from .._lazy import attach, table

# Each public name and its module, imported on first use (``keras-resnet-convert`` parses
# its arguments before TensorFlow is imported; the converter builds models, so it is only
# imported when asked for).
_NAMES = {"PREPROCESSING": "..preprocessing", **table(
    specs=(), checkpoint=("Checkpoint", "from_keras_applications_arrays", "from_torch_state_dict"),
    loading=("assign", "check_layout", "checkpoint_options", "inspect_checkpoint", "load_weights"),
    names=("is_keras_applications_names", "keras_applications_name", "to_keras_applications_name",
           "torch_key_layer"),
    readers=("READERS", "read", "read_keras_file", "read_legacy_h5", "read_safetensors",
             "read_torch", "read_weights_h5"),
    converter=("FROM_SOURCE", "convert", "convert_file"),
    command=("main",),
), **{name: "..specs" for name in ("KERAS_V1", "KERAS_V2", "LAYOUT_OPTIONS", "TORCHVISION")}}
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "Checkpoint", "FROM_SOURCE", "KERAS_V1", "KERAS_V2", "LAYOUT_OPTIONS", "PREPROCESSING",
    "READERS", "TORCHVISION", "assign", "check_layout", "checkpoint_options", "convert",
    "convert_file", "from_keras_applications_arrays", "from_torch_state_dict",
    "inspect_checkpoint", "is_keras_applications_names", "keras_applications_name", "load_weights",
    "main", "read", "read_keras_file", "read_legacy_h5", "read_safetensors", "read_torch",
    "read_weights_h5", "to_keras_applications_name", "torch_key_layer",
]
