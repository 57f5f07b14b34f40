"""Training with ``tf.distribute``: one custom loop for every strategy.

    from keras_resnet.training import TrainConfig, train
    result = train(TrainConfig(dataset="digits", run_dir="runs/digits"))
    print(result.test_accuracy, result.run_dir)

Why one custom loop: Keras 3 ``Model.fit`` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585) while ``strategy.run`` inside a ``tf.function`` works for
one device, MirroredStrategy, MultiWorkerMirroredStrategy and TPUStrategy alike. Each
step is one ``tf.function`` call; the loss and accuracy sums stay on the device and are
read back every ``steps_per_execution`` steps, so the host does not wait on every step.

Batch size and learning rate follow the linear scaling rule: ``batch_size`` is per
replica (global batch = ``batch_size x replicas``) and ``lr`` is the rate for one
replica's batch (effective rate = ``lr x replicas``). Epoch counts are unchanged.

BatchNormalization statistics: the moving mean/variance are updated by each replica from
its own batch; unless ``sync_bn=True`` they differ between replicas (trainable weights
never do: gradients are all-reduced). What is saved (``best.keras``, ``last.keras``,
checkpoints) is the chief's first replica's statistics, or, with ``sync_bn=True``,
statistics of the global batch, identical on every replica.

Run directory layout (written by the chief only, every file atomically):

=====================  ==============================================================
``run.json``           dataset facts (``input_shape``, ``num_classes``, ``class_names``,
                       ``preprocessing``), ``outputs`` ("probabilities"), the settings,
                       ``test_accuracy`` of ``last.keras``, ``best`` (epoch, accuracy)
``best.keras``         the model with the best validation accuracy so far (``val_split``;
                       without it, the last model: the test split never chooses),
                       float32, softmax outputs, with the
                       preprocessing inside (``include_preprocessing``, the default:
                       it takes pixels 0..255)
``last.keras``         the model after the last finished epoch
``metrics.csv``        one row per finished epoch
``checkpoint/``        ``tf.train.Checkpoint`` (CheckpointManager) of the model, optimizer,
                       epoch/step, metrics history and best epoch: the resume point
``curves.png``         training curves
``tensorboard/``       TensorBoard event files
=====================  ==============================================================

SIGTERM (a scheduler's notice) or a first SIGINT (Ctrl-C) during training stops the loop
after the running step, commits that step and raises :class:`TrainingStopped`
(:mod:`.notice`; the command line exits with status 143 or 130).

Rerunning the same command resumes from ``checkpoint/``: the data order and every
augmentation draw are functions of ``(seed, epoch, example index)``, so a resumed run
sees the same batches as an uninterrupted one, and no finished epoch is lost or repeated.
The checkpoint is the commit point; every other file derives from it (see
:mod:`.checkpoints`).

Parts: :mod:`.config` (settings, presets), :mod:`.strategy`, :mod:`.recipe` (model,
schedule, optimizer), :mod:`.loop` (input, training step, evaluation), :mod:`.checkpoints`,
:mod:`.artifacts` (metrics.csv, models, curves, TensorBoard), :mod:`.run`
(``train``) and :mod:`.evaluate`. The run directory's layout, ``run.json`` and lock belong to
:mod:`keras_resnet.rundir`.
"""

from .._lazy import attach, table

# Each public name and its module, imported on first use (the training command's parser
# reads the recipes without importing TensorFlow).
_NAMES = table(
    artifacts=("curves_figure", "plot_history", "read_metrics"),
    checkpoints=("RESUME_KEYS", "read_checkpoint"),
    config=("OPTIMIZERS", "PRECISIONS", "PRESET_FOR_AUGMENT", "PRESETS", "SCHEDULES",
            "STRATEGIES", "TrainConfig", "TrainingError", "resolve_model"),
    evaluate=("evaluate",),
    notice=("EXIT_STATUS", "TrainingStopped"),
    loop=("make_train_chunk", "train_input_fn"),
    recipe=("LinearWarmup", "build_model", "decayed_variables", "learning_rate_schedule",
            "make_optimizer", "pixel_model"),
    recipes=("list_recipes", "load_recipe"),
    run=("TrainResult", "default_run_dir", "train"),
    strategy=("is_chief", "make_strategy", "strategy_name"),
)
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "TrainConfig", "TrainResult", "TrainingError", "train", "evaluate", "read_metrics",
    "read_checkpoint", "plot_history", "curves_figure", "make_strategy", "strategy_name",
    "is_chief", "build_model", "resolve_model", "learning_rate_schedule", "LinearWarmup",
    "make_optimizer", "decayed_variables", "make_train_chunk", "train_input_fn", "pixel_model",
    "default_run_dir", "PRESETS", "PRESET_FOR_AUGMENT", "STRATEGIES", "OPTIMIZERS",
    "SCHEDULES", "PRECISIONS", "RESUME_KEYS", "TrainingStopped", "EXIT_STATUS",
    "list_recipes", "load_recipe",
]
