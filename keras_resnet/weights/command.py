"""``keras-resnet-convert SOURCE OUTPUT.keras``: the command line of
:func:`keras_resnet.weights.convert_file` (parses its arguments before TensorFlow is
imported)."""

import argparse
import sys

from ..cli_util import add_version, setup_process

# keras_resnet.weights.converter.PREPROCESSING_CHOICES, here without importing TensorFlow
# (tests/test_weights_cli.py checks that the two agree).
PREPROCESSING_CHOICES = ("from_source", "torch", "tf", "caffe", "none")


def _input_shape(text):
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(None if p.strip().lower() in ("", "none") else int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 224,224,3)") from None
    if len(dims) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 224,224,3)")
    return dims


def main(argv=None):
    """``keras-resnet-convert SOURCE OUTPUT.keras``: convert a checkpoint to a .keras file."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a prefix of a flag is a typo, not that flag
        prog="keras-resnet-convert",
        description=(
            "Convert a pretrained ResNet checkpoint into a keras_resnet .keras file: a "
            "keras.applications ResNet50/101/152 or ResNet50V2/101V2/152V2 (.h5, .weights.h5, "
            ".keras) or a torchvision/timm ResNet-18/34/50/101/152, ResNeXt, Wide ResNet, ResNet-D, "
            "SE-ResNet or ECA-ResNet-D state_dict (.safetensors; "
            ".pth/.pt/.bin with PyTorch installed). The architecture is detected from the "
            "checkpoint; the written file is reloaded and checked before it is put in place."
        ),
    )
    parser.add_argument("source", help="checkpoint file")
    parser.add_argument("output", help="output .keras file (written atomically)")
    parser.add_argument("--input-shape", type=_input_shape, default=None, metavar="H,W,C",
                        help="model input shape, e.g. 224,224,3 (default: any size, the checkpoint's channels)")
    top = parser.add_mutually_exclusive_group()
    top.add_argument("--no-top", dest="include_top", action="store_false", default=None,
                     help="drop the classifier")
    top.add_argument("--include-top", dest="include_top", action="store_true",
                     help="keep the classifier (the default when the checkpoint has one)")
    parser.add_argument("--pooling", choices=["avg", "max"], default=None,
                        help="global pooling after the last stage with --no-top")
    parser.add_argument("--classifier-activation", default=None, metavar="NAME",
                        help="classifier activation, e.g. softmax, or none for logits (default: a "
                             ".keras source's own, else softmax)")
    parser.add_argument("--stride-on", choices=["3x3", "1x1"], default=None,
                        help="bottleneck stride placement of a torchvision-named checkpoint (default 3x3)")
    parser.add_argument("--preprocessing", choices=PREPROCESSING_CHOICES, default="from_source",
                        help="the input preprocessing put inside the model, which then takes RGB "
                             "pixels in 0..255 (default: the source's: torchvision/timm "
                             "ImageNet mean/std = torch, keras.applications ResNet = caffe, "
                             "ResNetV2 = tf; a source whose preprocessing cannot be known is "
                             "refused); none: the model takes its input as it is")
    parser.add_argument("--name", default=None, help="model name (default: resnet<depth>[v2])")
    add_version(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    setup_process()
    from .converter import FROM_SOURCE, convert_file

    activation = args.classifier_activation
    if activation is None:
        activation = FROM_SOURCE
    elif activation.lower() in ("none", "linear", ""):
        activation = None
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        convert_file(
            args.source, args.output, log=log, include_top=args.include_top,
            input_shape=args.input_shape, pooling=args.pooling, classifier_activation=activation,
            name=args.name, stride_on=args.stride_on, preprocessing=args.preprocessing,
        )
    except (ValueError, ImportError, OSError) as e:
        # OSError: keras_resnet.files.FileWriteError (the output cannot be written) names the path.
        print(f"keras-resnet-convert: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0



