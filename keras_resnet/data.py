"""Input data: the embedded default (scikit-learn's digits) and its preprocessing.

Conventions shared by training and export:

* images are NHWC float32 **pixels in 0..255**, whatever the source;
* a model's input is ``pixels * scale + offset`` (per channel), the dataset's
  :func:`preprocessing`; training applies it in the input pipeline and export bakes it
  into the serving signatures, so clients send pixels.
"""

import numpy as np

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def digits_arrays(split):
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes).

    A fixed stratified split: 25% test (450 images), the rest train (1,347).
    Returns ``(images, labels)``: float32 ``[N, 8, 8, 1]`` pixels in 0..255 and int64.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; accepted: 'train', 'test'")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "the default digits data needs scikit-learn: pip install 'keras-resnet[data]'"
        ) from e
    digits = load_digits()
    images = (digits.images.astype("float32") * (255.0 / 16.0))[..., None]
    labels = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def preprocessing_from_arrays(images):
    """``{"scale": [...], "offset": [...]}`` that standardises ``images`` per channel."""
    pixels = np.asarray(images, dtype="float64").reshape(-1, np.shape(images)[-1])
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) + 1e-6
    return {"scale": (1.0 / std).tolist(), "offset": (-mean / std).tolist()}


def apply_preprocessing(images, preprocessing):
    """``images * scale + offset`` (works on NumPy arrays and tensors)."""
    scale = np.asarray(preprocessing["scale"], dtype="float32")
    offset = np.asarray(preprocessing["offset"], dtype="float32")
    return images * scale + offset
