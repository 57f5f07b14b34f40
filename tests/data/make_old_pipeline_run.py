"""Writes tests/data/old_pipeline_run/: a training run made by keras_resnet *before* the input
pipeline delivered pixels (commit c6c179c, where make_dataset preprocessed in tf.data and the
training model took preprocessed images), stopped after its first epoch of two.

Run it with that version of keras_resnet on the path (never with the current one):

    git archive c6c179c | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python3 tests/data/make_old_pipeline_run.py tests/data/old_pipeline_run

tests/test_pixel_pipeline.py resumes it under the current code. Only the committed
checkpoint and the run's own small files are kept (the .keras models are derived files
that a resumed run writes again).
"""

import os
import shutil
import sys
import tempfile

from keras_resnet import training as kt

CONFIG = dict(dataset="digits", model="resnet8", epochs=2, steps_per_epoch=3, batch_size=16,
              lr=0.05, seed=0, deterministic=True, plot=False, tensorboard=False, verbose=0)


class _Stop(Exception):
    pass


def main(out):
    work = tempfile.mkdtemp()
    run_dir = os.path.join(work, "run")

    def stop(epoch, model):
        if epoch == 1:
            raise _Stop

    try:
        kt.train(kt.TrainConfig(run_dir=run_dir, **CONFIG), on_epoch_end=stop)
    except _Stop:
        pass
    for name in ("last.keras", "best.keras", "tensorboard", "curves.png"):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run_dir, out)
    shutil.rmtree(work)
    print(sorted(os.listdir(out)), sorted(os.listdir(os.path.join(out, "checkpoint"))))


if __name__ == "__main__":
    main(sys.argv[1])
