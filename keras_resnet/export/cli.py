"""Command line of the ``export/*.py`` scripts (parse arguments, call :func:`export_all`)."""

import argparse
import sys

from ..cli_util import HelpFormatter, check_distribution, flatten, list_of, number, setup_process


def build_parser(formats, prog=None):
    from .formats import (DEFAULT_OPSET, FORMATS, MAX_ACCURACY_DROP, MAX_OPSET, MIN_AGREEMENT,
                          MIN_OPSET, OPENVINO_DEFAULT_PRECISIONS, TITLES, TOP_K)
    from .formats import ONNX_DEFAULT_PRECISIONS as DEFAULT_ONNX
    from .formats import TFLITE_DEFAULT_PRECISIONS as DEFAULT_TFLITE

    all_formats = list(formats) == list(FORMATS)
    what = "every format" if all_formats else " and ".join(TITLES[f] for f in formats)
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a prefix of a flag is a typo, not that flag
        prog=prog, formatter_class=HelpFormatter,
        description=(
            f"Export a trained Keras model to {what}, verify each export in its runtime against "
            "the Keras model, and write the report (report.json / report.md; report_<formats>.json "
            "/ .md for a subset of the formats): per format and precision, accuracy on the "
            "labelled held-out data, agreement with Keras, parity, batch-1 and batch-32 latency, "
            "throughput and size. Exits 1 when an export misses its parity threshold, 2 on bad "
            "input; what the evaluation set is too small to tell is a warning (exit 0)."
        ),
    )
    parser.add_argument("source", help="training run directory (best.keras + run.json) or a .keras file")
    parser.add_argument("-o", "--out", default="exports",
                        help="output directory (default: %(default)s): saved_model/<name>/<version>/ "
                             "(with saved_model/models.config and batching_parameters.txt), "
                             "tflite/*.tflite, onnx/*.onnx, openvino/<name>_<precision>/, "
                             "report.json, report.md")
    if all_formats:
        parser.add_argument("--formats", type=list_of(str), nargs="+", metavar="FORMAT",
                            help=f"a subset of {', '.join(FORMATS)}, separated by commas or spaces "
                                 "(default: all)")
    if "tflite" in formats:
        parser.add_argument("--tflite", type=list_of(str), nargs="+", metavar="PRECISION",
                            help=f"TFLite precisions, separated by commas or spaces (default: "
                                 f"{','.join(DEFAULT_TFLITE)}); "
                                 "dynamic = dynamic-range int8, int8 = full integer, qat = int8 after "
                                 "quantization-aware training")
        parser.add_argument("--int8-io", default="int8", choices=("int8", "uint8", "float32"),
                            help="input/output type of full-integer models (default: %(default)s)")
        parser.add_argument("--qat-epochs", type=number(int, 0), default=2,
                            help="quantization-aware fine-tuning epochs (default: %(default)s; 0 skips qat)")
        parser.add_argument("--qat-learning-rate", type=number(float, 0, low_open=True), default=1e-5,
                            help="Adam learning rate of the QAT fine-tuning (default: %(default)s)")
    if "onnx" in formats:
        parser.add_argument("--onnx", type=list_of(str), nargs="+", metavar="PRECISION",
                            help=f"ONNX precisions, separated by commas or spaces (default: "
                                 f"{','.join(DEFAULT_ONNX)})")
        parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                            help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default: %(default)s)")
    if "openvino" in formats:
        parser.add_argument("--openvino", type=list_of(str), nargs="+", metavar="PRECISION",
                            help=f"OpenVINO precisions, separated by commas or spaces (default: "
                                 f"{','.join(OPENVINO_DEFAULT_PRECISIONS)}); fp16 = float16 weights")
    if "savedmodel" in formats:
        parser.add_argument("--version", type=number(int, 0), default=None,
                            help="SavedModel version (default: the next free number)")
        parser.add_argument("--top-k", type=number(int, 1), default=TOP_K,
                            help="classes (labels) and scores the SavedModel's signatures return, "
                                 "best first (default: %(default)s; at most the number of classes)")
    parser.add_argument("--model-name", default=None,
                        help="model name for files and the TF Serving path (default: the model's name)")
    if set(formats) & {"tflite", "onnx", "openvino"}:
        parser.add_argument("--dataset", default=None,
                            help="dataset for calibration and evaluation (default: run.json's); see "
                                 "keras_resnet.data")
        parser.add_argument("--data-dir", default=None,
                            help="data directory for folder/tfrecord/tfds datasets (default: run.json's)")
        parser.add_argument("--image-size", type=number(int, 8, 4096), default=None,
                            help="image size the dataset is read at (default: run.json's, i.e. the "
                                 "model's input size)")
        parser.add_argument("--num-samples", type=number(int, 1), default=200,
                            help="representative (calibration) images drawn from the training data "
                                 "(default: %(default)s)")
        parser.add_argument("--calibration-data", default=None, metavar="FILE",
                            help=".npy images (or .npz with 'images') to calibrate on instead")
        parser.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT, metavar="FRACTION",
                            help="quantized exports: least top-1 agreement with the Keras model "
                                 "(default: %(default)s)")
        parser.add_argument("--max-accuracy-drop", type=float, default=MAX_ACCURACY_DROP, metavar="FRACTION",
                            help="quantized exports: largest accuracy drop on labelled data, as a "
                                 "fraction (default: %(default)s = 1 percentage point)")
    parser.add_argument("--preprocessing", choices=("torch", "tf", "none"), default=None,
                        help="what the model's input is, for a .keras file without run.json "
                             "whose model has no preprocessing inside: torch (ImageNet mean/std "
                             "of pixels / 255), tf (pixels / 127.5 - 1) or none (pixels 0..255 "
                             "as they are); overrides run.json's")
    parser.add_argument("--eval-data", default=None, metavar="FILE",
                        help=".npz with 'images' and 'labels' to verify on instead of the test split")
    parser.add_argument("--seed", type=number(int, 0), default=0, help="seed of the calibration draw")
    parser.add_argument("--latency-runs", type=number(int, 1), default=50,
                        help="timed batch-1 calls per artifact (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (a SavedModel version only when --version names it)")
    parser.add_argument("--quiet", action="store_true", help="print only the report")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's and LiteRT's own log lines (hidden by default)")
    return parser


def main(argv=None, formats=None, prog=None):
    """Run the export command line; returns the exit status (0 ok, 1 parity failure, 2 bad input)."""
    from .formats import FORMATS, OPENVINO_DEFAULT_PRECISIONS
    from .formats import ONNX_DEFAULT_PRECISIONS as DEFAULT_ONNX
    from .formats import TFLITE_DEFAULT_PRECISIONS as DEFAULT_TFLITE

    check_distribution()
    formats = list(formats or FORMATS)
    parser = build_parser(formats, prog=prog)
    args = parser.parse_args(argv)
    setup_process(args.verbose)

    from ._common import ExportError, ParityError
    from .pipeline import export_all
    from .report import markdown, print_outcome

    kwargs = dict(
        formats=flatten(getattr(args, "formats", None)) or formats,
        model_name=args.model_name, overwrite=args.overwrite, seed=args.seed,
        preprocessing=args.preprocessing,
        latency_runs=args.latency_runs, eval_data=args.eval_data,
        progress=None if args.quiet else (lambda m: print(m, flush=True)),
    )
    if "tflite" in formats:
        kwargs.update(tflite_precisions=flatten(args.tflite) or DEFAULT_TFLITE, int8_io=args.int8_io, qat_epochs=args.qat_epochs,
                      qat_options={"learning_rate": args.qat_learning_rate})
    if "onnx" in formats:
        kwargs.update(onnx_precisions=flatten(args.onnx) or DEFAULT_ONNX, opset=args.opset)
    if "openvino" in formats:
        kwargs["openvino_precisions"] = flatten(args.openvino) or OPENVINO_DEFAULT_PRECISIONS
    if "savedmodel" in formats:
        kwargs.update(version=args.version, top_k=args.top_k)
    if set(formats) & {"tflite", "onnx", "openvino"}:
        kwargs.update(dataset=args.dataset, num_samples=args.num_samples,
                      calibration_images=args.calibration_data, min_agreement=args.min_agreement,
                      max_accuracy_drop=args.max_accuracy_drop)
        given = {"data_dir": args.data_dir, "image_size": args.image_size}
        if any(v is not None for v in given.values()):
            kwargs["dataset_kwargs"] = {k: v for k, v in given.items() if v is not None}
    try:
        report = export_all(args.source, args.out, **kwargs)
    except ParityError as e:
        if args.quiet and e.report:  # the table shows what failed and by how much
            print(markdown(e.report))
        print(f"error: parity check failed: {e}", file=sys.stderr)
        return 1
    except (ExportError, ValueError, OSError) as e:
        # Bad input, or the operating system refusing a write (keras_resnet.files.FileWriteError
        # names the path): one line, exit 2.
        message = " ".join(str(e).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    print_outcome(report, args.quiet)
    return 0


def main_savedmodel(argv=None):
    """``export_savedmodel.py``: SavedModel only."""
    return main(argv, formats=["savedmodel"], prog="export_savedmodel")


def main_tflite(argv=None):
    """``export_tflite.py``: TFLite only."""
    return main(argv, formats=["tflite"], prog="export_tflite")


def main_onnx(argv=None):
    """``export_onnx.py``: ONNX only."""
    return main(argv, formats=["onnx"], prog="export_onnx")


def main_openvino(argv=None):
    """``export_openvino.py``: OpenVINO IR only."""
    return main(argv, formats=["openvino"], prog="export_openvino")
