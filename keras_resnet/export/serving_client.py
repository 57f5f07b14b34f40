"""Request bodies for TF Serving's REST predict API, and its replies, as plain JSON (no
TensorFlow needed on the client).

TF Serving's REST API (``POST /v1/models/<name>[/versions/<n>]:predict``) takes a JSON body
in one of two forms:

- row form, ``{"signature_name": ..., "instances": [one value per image]}``;
- columnar form, ``{"signature_name": ..., "inputs": {"<input>": [the whole batch]}}``.

Binary values (encoded images for ``serving_bytes``, whose input name ``image_bytes`` ends in
``_bytes`` as the API asks) are sent as ``{"b64": "<base64>"}``. The reply is
``{"predictions": [{output: value} per image]}`` for the row form and
``{"outputs": {output: [the whole batch]}}`` for the columnar one. ::

    from keras_resnet.export.serving_client import bytes_request, predict_url, parse_reply
    body = bytes_request([open("digit.png", "rb").read()])
    # requests.post(predict_url("resnet_cifar20"), json=body).json() -> parse_reply(...)
"""

import base64

FORMS = ("instances", "inputs")


def predict_url(model_name, host="localhost", port=8501, version=None):
    """The REST predict URL of ``model_name`` (its latest version unless ``version``)."""
    where = f"/versions/{int(version)}" if version is not None else ""
    return f"http://{host}:{port}/v1/models/{model_name}{where}:predict"


def _check_form(form):
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not supported; accepted: {', '.join(FORMS)}")


def _as_list(images):
    tolist = getattr(images, "tolist", None)
    return tolist() if tolist else [getattr(im, "tolist", lambda: im)() for im in images]


def images_request(images, form="instances", signature="serving_default"):
    """The body for the pixel signature: ``images`` ``[batch, H, W, C]`` pixels 0..255 (a
    NumPy array or nested lists)."""
    _check_form(form)
    rows = _as_list(images)
    if form == "instances":
        return {"signature_name": signature, "instances": rows}
    return {"signature_name": signature, "inputs": {"images": rows}}


def b64(data):
    """``{"b64": ...}``: how TF Serving's JSON carries a binary value."""
    return {"b64": base64.b64encode(bytes(data)).decode("ascii")}


def bytes_request(encoded_images, form="instances", signature="serving_bytes"):
    """The body for the encoded-image signature: ``encoded_images`` is a list of JPEG/PNG
    file contents (bytes)."""
    _check_form(form)
    values = [b64(data) for data in encoded_images]
    if form == "instances":
        return {"signature_name": signature, "instances": values}
    return {"signature_name": signature, "inputs": {"image_bytes": values}}


def parse_reply(reply):
    """The reply of either form as one dict per image: ``{output name: value}``
    (``classes``, ``scores``, ``probabilities``, ``logits``)."""
    if "error" in reply:
        raise RuntimeError(f"TF Serving answered: {reply['error']}")
    if "predictions" in reply:
        rows = reply["predictions"]
        return [row if isinstance(row, dict) else {"output": row} for row in rows]
    if "outputs" in reply:
        outputs = reply["outputs"]
        if not isinstance(outputs, dict):
            return [{"output": row} for row in outputs]
        n = len(next(iter(outputs.values()))) if outputs else 0
        return [{name: values[i] for name, values in outputs.items()} for i in range(n)]
    raise ValueError(f"not a TF Serving predict reply: keys {sorted(reply)}; expected "
                     "'predictions' or 'outputs'")
