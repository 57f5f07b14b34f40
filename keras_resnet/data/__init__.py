"""Input data: datasets, tf.data input pipelines, augmentation and preprocessing.

Conventions shared by training and export:

* images are NHWC float32 **pixels in 0..255**, whatever the source;
* a model's input is ``pixels * scale + offset`` (per channel), the dataset's
  :func:`preprocessing`; training applies it in the input pipeline and export bakes it
  into the serving signatures, so clients send pixels.

Datasets (``name`` arguments below; nothing is downloaded unless ``download=True``):

=================  =====================================================================
``digits``         scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images,
                   10 classes, a fixed stratified split (1,347 train / 450 test).
``cifar10``        CIFAR-10 / CIFAR-100 through ``keras.datasets`` (cached under
``cifar100``       ``~/.keras/datasets``; ``download=True`` fetches them).
``folder``         an image folder, ``data_dir/<class>/<image>``; with ``train/`` and
                   ``test/`` (or ``val/``, ``validation/``) sub-folders those are the splits,
                   otherwise a fixed stratified 80/20 split of each class.
``tfrecord``       ImageNet-style TFRecord files (``image/encoded``,
                   ``image/class/label``): ``data_dir`` holds ``train-*`` and
                   ``validation-*`` files.
``tfds:NAME``      any TensorFlow Datasets name that is already prepared in ``data_dir``
                   (or ``~/tensorflow_datasets``); ``download=True`` prepares it.
``synthetic``      random images of a fixed size, for throughput measurements.
=================  =====================================================================

:func:`make_dataset` is the one input pipeline (training, evaluation, calibration and the
benchmarks use it); :func:`write_tfrecords` (``keras-resnet-make-tfrecords``) turns an image
folder into the shuffled, sharded TFRecords the ``tfrecord`` dataset reads.

:func:`with_validation` carves a ``validation`` split out of any dataset's training split
(stratified for in-memory datasets, every k-th record for files), for choosing the best
model without looking at the test split.

Where each part lives: ``base`` (constants, :class:`Dataset`, record sources), ``arrays``
(in-memory datasets), ``on_disk`` (folder, TFRecord, TFDS), ``catalog``
(:func:`get_dataset`, :func:`with_validation`), ``augment``, ``pipeline``
(:func:`make_dataset`), ``diagnose`` (naming unreadable files), ``samples`` (evaluation
and calibration pixels), ``tfrecords`` (:func:`write_tfrecords`), ``make_tfrecords`` (its
command) and ``constants`` (the tables and :class:`DataError`, without TensorFlow).
"""

from .._lazy import attach, table

# Each public name and the module that defines it, imported on first use (the commands'
# parsers read the constants without importing TensorFlow).
_NAMES = {"apply_preprocessing": "..preprocessing", **table(
    constants=("AUGMENTATIONS", "CIFAR10_CLASSES", "DATASETS", "DIGITS_SPLIT_SEED",
               "DIGITS_TEST_FRACTION", "FOLDER_TEST_FRACTION", "IMAGE_EXTENSIONS",
               "IMAGENET_MEAN", "IMAGENET_STD", "DataError"),
    arrays=("ArrayDataset", "digits_arrays"),
    augment=("transform",),
    base=("Dataset", "preprocessing_from_arrays"),
    catalog=("RUN_DATASET_ARGS", "VALIDATION_SEED", "check_val_split", "get_dataset",
             "run_dataset_kwargs", "with_validation"),
    diagnose=("damaged_file", "locate_unreadable", "unreadable_image_error"),
    on_disk=("TFRECORD_CLASSES_FILE", "FileDataset", "FolderDataset", "TFDSDataset",
             "TFRecordDataset"),
    pipeline=("CACHE_BYTES", "SHUFFLE_WINDOW", "make_dataset"),
    samples=("representative_images", "sample_photo_folder", "test_arrays", "train_sample"),
    tfrecords=("write_tfrecords",),
    make_tfrecords=("make_tfrecords_main",),
)}
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "AUGMENTATIONS", "CACHE_BYTES", "CIFAR10_CLASSES", "DATASETS", "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION", "FOLDER_TEST_FRACTION", "IMAGE_EXTENSIONS", "IMAGENET_MEAN",
    "IMAGENET_STD", "RUN_DATASET_ARGS", "SHUFFLE_WINDOW", "TFRECORD_CLASSES_FILE",
    "VALIDATION_SEED", "ArrayDataset", "DataError", "Dataset", "FileDataset", "FolderDataset",
    "TFDSDataset", "TFRecordDataset", "apply_preprocessing", "check_val_split", "damaged_file",
    "digits_arrays", "get_dataset", "locate_unreadable", "make_dataset", "make_tfrecords_main",
    "preprocessing_from_arrays", "representative_images", "run_dataset_kwargs",
    "sample_photo_folder", "test_arrays", "train_sample", "transform", "unreadable_image_error",
    "with_validation", "write_tfrecords",
]
