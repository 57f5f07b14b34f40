"""The data tables and :class:`DataError`: plain Python, no TensorFlow, so that the
commands' argument parsers can use them before TensorFlow is imported."""

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
FOLDER_TEST_FRACTION = 0.2
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DATASETS = ("digits", "cifar10", "cifar100", "folder", "tfrecord", "synthetic", "tfds:NAME")
AUGMENTATIONS = ("none", "shift", "cifar", "imagenet")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


class DataError(ValueError):
    """A dataset is missing, empty, unreadable or mis-specified (message says which)."""
