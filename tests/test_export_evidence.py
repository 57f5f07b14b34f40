"""The quantized gates judge what the evaluation set can show.

The statistics (Wilson and Clopper-Pearson intervals, McNemar's exact test) are checked
against SciPy's independent implementations (and statsmodels' where it is installed); the
gate's verdicts on the situations the export meets: a small evaluation set, QAT that
retrained, a float model at chance, a real loss, a broken quantization.
"""

import math

import numpy as np
import pytest

from keras_resnet.export import evidence
from keras_resnet.export._common import quantized_parity

scipy_stats = pytest.importorskip("scipy.stats")  # scikit-learn's dependency: the [test] extra

CASES = [(0, 18), (1, 18), (17, 18), (18, 18), (415, 450), (449, 450), (3, 30), (10, 10), (7, 200)]


@pytest.mark.parametrize("k,n", CASES)
def test_wilson_and_clopper_pearson_match_scipy(k, n):
    result = scipy_stats.binomtest(k, n)
    want = result.proportion_ci(0.95, method="wilson")
    assert evidence.wilson_interval(k, n) == pytest.approx((want.low, want.high), abs=1e-9)
    want = result.proportion_ci(0.95, method="exact")
    assert evidence.clopper_pearson(k, n) == pytest.approx((want.low, want.high), abs=1e-9)
    # The Wilson bounds are where the score statistic equals z (a second computation).
    for bound in evidence.wilson_interval(k, n):
        if 0 < bound < 1:
            z = abs(k / n - bound) / math.sqrt(bound * (1 - bound) / n)
            assert z == pytest.approx(evidence.Z95, rel=1e-9)


def test_wilson_matches_statsmodels_where_installed():
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for k, n in CASES:
        want = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
        assert evidence.wilson_interval(k, n) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (2, 0), (10, 0), (15, 1), (35, 20), (3, 3), (0, 7)])
def test_mcnemar_exact_matches_the_binomial_test_on_discordant_pairs(b, c):
    want = 1.0 if b + c == 0 else scipy_stats.binomtest(b, b + c, 0.5).pvalue
    assert evidence.mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_accuracy_change_interval_is_the_inverted_exact_test():
    """Each bound of the change's interval is where the conditional exact test of that change
    has a one-sided p-value of 2.5% (SciPy's binomial tail)."""
    b, c, n = 15, 1, 450
    change, low, high = evidence.accuracy_change_interval(b, c, n)
    assert change == pytest.approx(-14 / 450) and low < change < high
    m = b + c
    q_at_low = (1 - low * n / m) / 2   # change = m (1 - 2q) / n: the largest q, P(X <= b) = 2.5%
    assert scipy_stats.binom.cdf(b, m, q_at_low) == pytest.approx(0.025, rel=1e-6)
    q_at_high = (1 - high * n / m) / 2  # the smallest q: P(X >= b) = 2.5%
    assert scipy_stats.binom.sf(b - 1, m, q_at_high) == pytest.approx(0.025, rel=1e-6)


def _logits(pred, classes):
    out = np.full((len(pred), classes), -1.0)
    out[np.arange(len(pred)), pred] = 3.0
    return out


def _case(n, classes, ref_right, lost, gained, flips_extra=0, seed=0):
    """Labels, float predictions right on ``ref_right`` images; the quantized predictions
    lose ``lost`` of them, gain ``gained`` of the others, and change ``flips_extra`` more
    wrong answers to other wrong answers."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    wrong = (labels + 1) % classes
    ref = np.where(np.arange(n) < ref_right, labels, wrong)
    q = ref.copy()
    q[:lost] = wrong[:lost]
    q[ref_right:ref_right + gained] = labels[ref_right:ref_right + gained]
    extra = slice(ref_right + gained, ref_right + gained + flips_extra)
    q[extra] = (labels[extra] + 2) % classes
    return _logits(ref, classes), _logits(q, classes), labels


def test_qat_that_retrained_passes_on_accuracy_where_agreement_would_fail():
    """The quickstart's case: 450 test images, 35 changed predictions (92.2% agreement), and
    the QAT model as accurate as the float one: QAT is judged on accuracy and passes; a
    post-training quantization with the same predictions fails on agreement."""
    ref, q, labels = _case(450, 10, ref_right=400, lost=15, gained=15, flips_extra=5)
    qat = quantized_parity(ref, q, labels, gate_on="accuracy")
    assert qat["agreement"] == pytest.approx(415 / 450) and qat["n"] == 450
    assert qat["passed"] and qat["verdict"] == "pass", qat
    assert qat["accuracy_change"] == 0.0 and qat["mcnemar_p"] == pytest.approx(1.0)
    ptq = quantized_parity(ref, q, labels)
    assert not ptq["passed"] and "top-1 agreement 92.22%" in ptq["message"]
    assert ptq["agreement_ci"][1] < 0.95  # the interval's upper bound is below the threshold


def test_a_small_set_warns_instead_of_failing():
    """18 images: one image is 5.6 pp. Two lost images are a point estimate of -11 pp, which
    the evidence cannot tell from the allowed 1 pp: a warning, not a failure."""
    ref, q, labels = _case(18, 3, ref_right=15, lost=2, gained=0)
    p = quantized_parity(ref, q, labels)
    assert p["passed"] and p["verdict"] == "warn", p
    assert any("too few images to tell" in w for w in p["warnings"]), p["warnings"]
    ref, q, labels = _case(18, 3, ref_right=15, lost=0, gained=0)
    p = quantized_parity(ref, q, labels)
    assert p["passed"] and p["verdict"] == "warn"
    assert "18 images cannot resolve a 1 pp accuracy drop (one image is 5.56 pp)" in p["warnings"][0]


def test_a_float_model_at_chance_is_said_first_and_nothing_is_blamed_on_quantization():
    labels = np.repeat([0, 1, 2], 10)  # balanced: chance 1/3
    ref = _logits(np.where(np.arange(30) % 3 == 0, labels, (labels + 1) % 3), 3)  # 10 of 30 right
    q = _logits((labels + 2) % 3, 3)  # every prediction changed, none right
    p = quantized_parity(ref, q, labels, gate_on="accuracy")
    assert p["float_at_chance"] and p["passed"] and p["verdict"] == "warn"
    assert p["warnings"][0] == ("the float model's accuracy is 33% (chance 33%): train longer "
                                "before judging quantization")
    assert p["message"] == ""


def test_a_real_loss_fails_and_says_with_what_evidence():
    ref, q, labels = _case(450, 10, ref_right=440, lost=20, gained=0)
    p = quantized_parity(ref, q, labels, min_agreement=0.0, gate_on="agreement")
    assert not p["passed"] and p["verdict"] == "fail"
    low, high = p["accuracy_change_ci"]
    assert high < -0.01  # the whole interval is beyond the allowed 1 pp
    assert "4.44 pp below the Keras model's 97.78% on 450 images" in p["message"]
    assert f"[{low * 100:+.2f}, {high * 100:+.2f}] pp" in p["message"]
    assert "20 lost, 0 gained" in p["message"] and "exceeds the allowed 1 pp" in p["message"]


def test_a_broken_quantization_fails_even_on_a_small_set():
    ref, q, labels = _case(20, 10, ref_right=19, lost=17, gained=0)
    p = quantized_parity(ref, q, labels)
    assert not p["passed"]
    assert "top-1 agreement 15.00%" in p["message"] and "accuracy" in p["message"]


def test_a_small_export_with_a_model_at_chance_warns_and_exits_0(tmp_path, capfd):
    """End to end (LiteRT int8 of a tiny untrained model, labels it cannot know): the export
    is written, exits 0, and the first warning is the float model's accuracy at chance; the
    converter's own native line ("fully_quantize: 0, ...") stays hidden."""
    import keras

    import keras_resnet as kr
    from keras_resnet.export.cli import main

    keras.utils.set_random_seed(0)
    model = kr.ResNet([1], [8], stem="cifar", input_shape=(8, 8, 1), classes=3, name="untrained")
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (30, 8, 8, 1)).astype("float32")
    ref = np.asarray(model(images, training=False)).argmax(1)
    # Labels that the model gets right exactly 10 of 30 times: accuracy 33%, chance 1/3.
    right = np.arange(30) % 3 == 0
    labels = np.where(right, ref, (ref + 1) % 3)
    np.savez(tmp_path / "eval.npz", images=images, labels=labels)
    np.save(tmp_path / "calib.npy", images)
    rc = main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--formats", "tflite",
               "--tflite", "int8", "--preprocessing", "none", "--eval-data", str(tmp_path / "eval.npz"),
               "--calibration-data", str(tmp_path / "calib.npy"), "--latency-runs", "2", "--quiet"])
    out, err = capfd.readouterr()  # file descriptors 1 and 2: native code's output too
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "fully_quantize" not in err, err
    assert warnings[0] == ("warning: the float model's accuracy is 33% (chance 33%): "
                           "train longer before judging quantization"), err
    assert (tmp_path / "out" / "tflite" / "untrained_int8.tflite").is_file()
    assert "Warning: the float model's accuracy is 33%" in out


@pytest.mark.slow
def test_a_two_epoch_small_folder_run_exports_and_names_the_real_cause(tmp_path, capfd):
    """3 classes of 30 images, 2 epochs, then ``--export`` (every format and precision, QAT
    included): the command ends 0, and whatever the quantized exports could not be judged
    on is a warning; when the float model is at chance that is said first, and nothing is
    blamed on quantization."""
    import json

    from PIL import Image

    from keras_resnet.train import main

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "photos" / f"class{c}").mkdir(parents=True)
        for i in range(30):
            y, x = np.mgrid[0:20, 0:20]
            img = np.stack([(x * (3 + 4 * c) + y * (c + 1) + i) % 256, (y * 9 + 40 * c) % 256,
                            rng.integers(0, 256, (20, 20))], -1).astype("uint8")
            Image.fromarray(img).save(tmp_path / "photos" / f"class{c}" / f"{i}.png")
    code = main(["--dataset", "folder", "--data-dir", str(tmp_path / "photos"), "--image-size", "16",
                 "--model", "resnet8", "--epochs", "2", "--batch-size", "8", "--quiet", "--no-plot",
                 "--no-tensorboard", "--run-dir", str(tmp_path / "run"), "--export", str(tmp_path / "out")],
                prog="train.py")
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["passed"] and report["failures"] == []
    quantized = [a for a in report["artifacts"] if a["parity"] and a["parity"]["kind"] == "quantized"]
    assert {a["precision"] for a in quantized} >= {"int8", "qat", "fp16"}
    warnings = [line[len("warning: "):] for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == report["warnings"]
    if report.get("float_at_chance"):
        assert warnings[0].startswith("the float model's accuracy is ") and "(chance 33%)" in warnings[0]
        assert all(a["parity"]["verdict"] == "warn" for a in quantized)
        assert warnings == [report["float_at_chance"]]  # said once, and nothing else blamed
