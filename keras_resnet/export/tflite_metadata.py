"""LiteRT (TFLite) model metadata: what Android's LiteRT Task Library ``ImageClassifier`` and
Android Studio's ML Model Binding read from a ``.tflite`` file.

The metadata is a ``ModelMetadata`` flatbuffer (file identifier ``M001``) as TensorFlow Lite
Support's ``metadata_schema.fbs`` defines it, stored in one of the model's buffers and named
by a ``Metadata`` entry ``TFLITE_METADATA``; the files it names (``labels.txt``) are packed
into a zip archive appended to the flatbuffer, as the metadata writer of TensorFlow Lite
Support does. This module builds it with the ``flatbuffers`` package (TensorFlow Lite
Support's writer pins protobuf < 4 and cannot be installed beside TensorFlow 2.21).

What is written (schema 1.0.0 fields only, so every metadata parser reads it):

- model: name, description, version, author, ``min_parser_version``;
- input ``images``: ``ImageProperties`` (colour space RGB or GRAYSCALE, the default size),
  ``NormalizationOptions`` (mean 0, std 1 per channel: the model takes pixels 0..255 and
  does its own preprocessing, so a client must not normalise) and the value range 0..255;
- each output (``logits``, ``probabilities``): ``FeatureProperties`` and the label file
  ``labels.txt`` (``TENSOR_AXIS_LABELS``: one class name per line, in output order);
- the model's own files (``DESCRIPTIONS``): ``eval_transform.json``, how to resize and crop
  an image for the model, with the weights' ``pretrained_cfg`` (interpolation,
  ``crop_pct``, sizes, mean and std) when the model has one.
"""

import io
import zipfile

import flatbuffers
import numpy as np

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABEL_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"

# metadata_schema.fbs: enum values and union tags
COLOR_SPACE = {"RGB": 1, "GRAYSCALE": 2}
CONTENT_FEATURE, CONTENT_IMAGE = 1, 2            # union ContentProperties
PROCESS_NORMALIZATION = 1                         # union ProcessUnitOptions
DESCRIPTIONS, TENSOR_AXIS_LABELS = 1, 2          # enum AssociatedFileType


def _strings(b, values):
    return [b.CreateString(v) for v in values]


def _vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _floats(b, values):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _table(b, fields):
    """A table from ``[(slot, kind, value)]``: kind "off" (an offset), "u8", "u32"."""
    b.StartObject(max(slot for slot, _, _ in fields) + 1 if fields else 0)
    for slot, kind, value in fields:
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "u8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "u32":
            b.PrependUint32Slot(slot, value, 0)
    return b.EndObject()


def _label_file(b, description, file_name=LABEL_FILE, kind=TENSOR_AXIS_LABELS):
    name, desc = _strings(b, [file_name, description])
    # AssociatedFile: name 0, description 1, type 2, locale 3
    return _table(b, [(0, "off", name), (1, "off", desc), (2, "u8", kind)])


def _stats(b, low, high):
    # Stats: max 0, min 1
    mx, mn = _floats(b, high), _floats(b, low)
    return _table(b, [(0, "off", mx), (1, "off", mn)])


def model_metadata(name, description, version, author, input_shape, output_names, output_descriptions,
                   color_space, labels_description="class names, one per line, in output order",
                   model_files=None):
    """The ``ModelMetadata`` flatbuffer (bytes, identifier ``M001``) of an image classifier
    that takes pixels 0..255 of ``input_shape`` ``(H, W, C)``; ``model_files``: ``{file name:
    description}`` of the model's own ``DESCRIPTIONS`` files."""
    h, w, c = input_shape
    b = flatbuffers.Builder(1024)
    # input tensor
    in_name, in_desc = _strings(b, ["images", (
        f"{color_space} image, float32 [batch, {h}, {w}, {c}] pixels 0..255 "
        "(the model does its own preprocessing: do not normalise)")])
    size = _table(b, [(0, "u32", int(w or 0)), (1, "u32", int(h or 0))])          # ImageSize
    image = _table(b, [(0, "u8", COLOR_SPACE[color_space]), (1, "off", size)])     # ImageProperties
    content = _table(b, [(0, "u8", CONTENT_IMAGE), (1, "off", image)])            # Content
    mean, std = _floats(b, [0.0] * c), _floats(b, [1.0] * c)
    norm = _table(b, [(0, "off", mean), (1, "off", std)])                          # NormalizationOptions
    unit = _table(b, [(0, "u8", PROCESS_NORMALIZATION), (1, "off", norm)])        # ProcessUnit
    units = _vector(b, [unit])
    stats = _stats(b, [0.0], [255.0])
    # TensorMetadata: name 0, description 1, dimension_names 2, content 3, process_units 4,
    # stats 5, associated_files 6
    input_meta = _table(b, [(0, "off", in_name), (1, "off", in_desc), (3, "off", content),
                            (4, "off", units), (5, "off", stats)])
    outputs = []
    for out_name, out_desc in zip(output_names, output_descriptions):
        n, d = _strings(b, [out_name, out_desc])
        feature = _table(b, [])                                                    # FeatureProperties
        out_content = _table(b, [(0, "u8", CONTENT_FEATURE), (1, "off", feature)])
        files = _vector(b, [_label_file(b, labels_description)])
        fields = [(0, "off", n), (1, "off", d), (3, "off", out_content), (6, "off", files)]
        if out_name == "probabilities":
            fields.append((5, "off", _stats(b, [0.0], [1.0])))
        outputs.append(_table(b, sorted(fields)))
    inputs_vec, outputs_vec = _vector(b, [input_meta]), _vector(b, outputs)
    sg_name = b.CreateString(name)
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3
    subgraph = _table(b, [(0, "off", sg_name), (2, "off", inputs_vec), (3, "off", outputs_vec)])
    subgraphs = _vector(b, [subgraph])
    own = [_label_file(b, desc, file_name, DESCRIPTIONS) for file_name, desc in (model_files or {}).items()]
    own_vec = _vector(b, own) if own else None
    m_name, m_desc, m_version, m_author, m_parser = _strings(
        b, [name, description, version, author, MIN_PARSER_VERSION])
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
    # license 5, associated_files 6, min_parser_version 7
    fields = [(0, "off", m_name), (1, "off", m_desc), (2, "off", m_version),
              (3, "off", subgraphs), (4, "off", m_author), (7, "off", m_parser)]
    if own_vec is not None:
        fields.insert(5, (6, "off", own_vec))
    root = _table(b, fields)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def subgraph_output_names(content):
    """The ``serving_default`` signature's output names in the order of the main subgraph's
    outputs (the order the metadata's output list must follow)."""
    from ai_edge_litert import schema_py_generated as schema  # the [export] extra

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    outputs = [graph.Outputs(i) for i in range(graph.OutputsLength())]
    names = {}
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        for i in range(sig.OutputsLength()):
            names[sig.Outputs(i).TensorIndex()] = sig.Outputs(i).Name().decode()
    return [names.get(t, graph.Tensors(t).Name().decode()) for t in outputs]


def populate(content, metadata, files):
    """``content`` (a ``.tflite`` flatbuffer) with ``metadata`` in a new buffer named by a
    ``TFLITE_METADATA`` entry (an existing one is replaced) and ``files`` (``{name: bytes}``)
    in a zip archive appended to the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME] + [entry]
    b = flatbuffers.Builder(max(1024, len(content) + len(metadata) + 1024))
    b.Finish(model.Pack(b), file_identifier=TFLITE_IDENTIFIER)
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def _name(entry):
    name = entry.name
    return name.decode() if isinstance(name, bytes) else name


def add_metadata(content, name, description, version, author, input_shape, class_names,
                 output_descriptions=None, model_files=None):
    """``content`` with the image-classifier metadata and its label file (see the module);
    ``model_files``: ``{file name: (bytes, description)}``, the model's own files."""
    outputs = subgraph_output_names(content)
    descriptions = output_descriptions or {
        "logits": f"float32 [batch, {len(class_names)}] class scores before softmax",
        "probabilities": f"float32 [batch, {len(class_names)}] softmax class probabilities"}
    color = "RGB" if input_shape[-1] == 3 else "GRAYSCALE" if input_shape[-1] == 1 else None
    if color is None:
        return content  # the schema names RGB and grayscale images only
    model_files = dict(model_files or {})
    metadata = model_metadata(name, description, version, author, input_shape, outputs,
                              [descriptions.get(o, o) for o in outputs], color,
                              model_files={k: d for k, (_, d) in model_files.items()})
    labels = "".join(f"{c}\n" for c in class_names).encode("utf-8")
    return populate(content, metadata, {LABEL_FILE: labels,
                                        **{k: data for k, (data, _) in model_files.items()}})
