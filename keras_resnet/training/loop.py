"""The step loop: the training input, the training step run by ``strategy.run`` several
steps per ``tf.function`` call, and evaluation."""

import contextlib
import math

import numpy as np
import tensorflow as tf

from .. import data as kdata

def train_input_fn(dataset, cfg, global_batch, steps_per_epoch, start_epoch, start_step, epochs):
    """``dataset_fn`` for ``distribute_datasets_from_function``: epochs ``start_epoch..epochs``
    of :func:`keras_resnet.data.make_dataset` in per-replica batches, this input pipeline's
    shard, from ``start_step`` of the first epoch: pixels (make_dataset's defaults), which
    the training model preprocesses (:func:`~.recipe.pixel_model`)."""

    def dataset_fn(ctx):
        dataset_fn.shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        local = (global_batch // per_replica) // ctx.num_input_pipelines
        return kdata.make_dataset(
            dataset, "train", per_replica, training=True, augment=cfg.augment, seed=cfg.seed,
            epoch=start_epoch, epochs=epochs - start_epoch,
            steps_per_epoch=steps_per_epoch * local, skip_batches=start_step * local,
            shard=(ctx.num_input_pipelines, ctx.input_pipeline_id),
            deterministic=True if cfg.deterministic else None, image_ops=image_ops(cfg),
            image_size=getattr(cfg, "train_image_size", None),
            repeats=getattr(cfg, "repeated_augment", None) or 1)

    dataset_fn.shard = (1, 0)
    return dataset_fn


def image_ops(cfg):
    """The recipe's per-image ops on 0..255 pixels (RandAugment or TrivialAugmentWide,
    then random erasing) as ``ops(pixels, seed)``, or None when it has none. They run in
    ``tf.data`` on the CPU, seeded from the example's crop seed."""
    spec, trivial = getattr(cfg, "rand_augment", None), getattr(cfg, "trivial_augment", False)
    erasing = getattr(cfg, "random_erasing", 0.0) or 0.0
    if not (spec or trivial or erasing):
        return None
    from ..data import randaug

    params = randaug.parse_rand_augment(spec) if spec else None

    def ops(x, seed):
        seed = tf.cast(seed, tf.int64)
        if params is not None:
            x = randaug.rand_augment(x, tf.stack([seed[0] + 7919, seed[1]]), **params)
        elif trivial:
            x = randaug.trivial_augment_wide(x, tf.stack([seed[0] + 7919, seed[1]]))
        if erasing:
            x = randaug.random_erasing(x, tf.stack([seed[0] + 104729, seed[1]]),
                                       probability=float(erasing))
        return tf.cast(x, tf.float32)

    return ops


def eval_dataset(dataset, augment, batch_size=256, preprocessing=None, split="test"):
    # The host model (best.keras, last.keras) takes what it always took: the preprocessed
    # images, or, when the preprocessing is inside it (``preprocessing`` is the identity),
    # the pixels as make_dataset delivers them (x * 1 + 0 is x: not computed per image).
    identity = preprocessing is not None and all(
        v == 1.0 for v in preprocessing["scale"]) and all(v == 0.0 for v in preprocessing["offset"])
    return kdata.make_dataset(dataset, split, batch_size, training=False, augment=augment,
                              preprocess=not identity, preprocessing=preprocessing)


@contextlib.contextmanager
def named_data_errors(dataset, split, state=None, **where):
    """Turns an unreadable image's decoding error into a one-line :class:`DataError` naming
    the file (``where``: the iteration's seed, epoch, shard and start, to find it) and,
    with ``state`` (a :class:`~.checkpoints.TrainingState`), the checkpoint to resume from."""

    try:
        yield
    except tf.errors.OpError as e:
        err = kdata.unreadable_image_error(e, dataset, split, **where)
        if err is None:
            raise
        if state is None:
            raise kdata.DataError(err) from None
        committed = state.committed()
        where = (f"; the run stopped at its last committed checkpoint {committed}, which "
                 "rerunning resumes from" if committed else "; no checkpoint was committed yet")
        raise kdata.DataError(f"{err}{where}") from None


def make_eval_fn(model, jit=False, outputs="probabilities"):

    @tf.function(jit_compile=bool(jit), reduce_retracing=True)
    def stats(x, y):
        out = tf.cast(model(x, training=False), tf.float32)
        if outputs == "probabilities":
            log_p = tf.math.log(tf.clip_by_value(tf.gather(out, y, axis=1, batch_dims=1), 1e-7, 1.0))
        else:
            log_p = -tf.nn.sparse_softmax_cross_entropy_with_logits(y, out)
        correct = tf.cast(tf.equal(tf.argmax(out, axis=1, output_type=tf.int32), y), tf.float32)
        # True class at or below the 1e-7 clip: the softmax has saturated on a wrong class.
        saturated = tf.reduce_sum(tf.cast(log_p <= math.log(1e-7), tf.float32) * (1.0 - correct))
        return -tf.reduce_sum(log_p), tf.reduce_sum(correct), tf.cast(tf.size(y), tf.float32), saturated

    def evaluate(ds, stop=None):
        """``(mean loss, accuracy, examples)``; ``evaluate.saturated`` is the fraction of
        examples whose true class got a probability <= 1e-7 (a wrong, saturated softmax).
        ``stop()``, if given, is asked after each batch; when it says True the evaluation
        ends early and returns None."""
        total = np.zeros(4)
        for x, y in ds:
            total += [float(t) for t in stats(x, y)]
            if stop is not None and stop():
                return None
        if total[2] == 0:
            raise kdata.DataError("the evaluation split is empty")
        evaluate.saturated = total[3] / total[2]
        return total[0] / total[2], total[1] / total[2], int(total[2])

    return evaluate


def make_train_chunk(strategy, model, optimizer, iterator, cfg, global_batch, decayed,
                     num_classes, backbone=(), lr_mult=1.0, ema=None):
    """``chunk(n)``: ``n`` training steps on batches from ``iterator``; returns the sums of
    the loss, correct predictions and examples over them (tensors).

    Weight decay on ``decayed`` is the paper's L2 term ``0.5 * wd * ||w||^2`` in the loss,
    applied as its gradient ``wd * w`` (the same update, without the squares and their
    backward pass over every kernel, which cost 10-30% of a CPU step).

    ``backbone`` (variables) get their gradients, weight decay included, multiplied by
    ``lr_mult``: with SGD that is exactly their learning rate times ``lr_mult``
    (fine-tuning's lower backbone rate).

    Recipe options of ``cfg``: mixup/cutmix (``mixup_alpha``, ``cutmix_alpha``, ...) mix
    each replica's batch inside the step (on the accelerator), seeded by ``(seed, step,
    replica)``; ``loss="bce"`` is timm's binary cross-entropy on the (mixed, smoothed)
    targets, thresholded at ``bce_target_threshold``; ``clip_grad_norm`` clips the
    gradient of the global batch (all replicas summed) to that global norm; ``ema`` (a
    :class:`.ema.WeightEMA` built on ``model``) is updated after every step.
    """
    replicas = strategy.num_replicas_in_sync
    smoothing = float(cfg.label_smoothing)
    # Gradients are summed over replicas, hence the division.
    wd = float(cfg.weight_decay) / replicas
    decayed_ids = {id(v) for v in decayed}
    decay = [id(v) in decayed_ids for v in model.trainable_variables]
    scaled_ids = {id(v) for v in backbone} if lr_mult != 1.0 else set()
    scales = [id(v) in scaled_ids for v in model.trainable_variables]
    mixing = bool(getattr(cfg, "mixup_alpha", 0) or getattr(cfg, "cutmix_alpha", 0))
    bce = getattr(cfg, "loss", "ce") == "bce"
    threshold = getattr(cfg, "bce_target_threshold", None)
    clip = float(getattr(cfg, "clip_grad_norm", 0) or 0)
    seed = int(cfg.seed)
    if mixing:
        from ..data.mix import mix_batch
    if bce:
        from .losses import binary_cross_entropy

        bce_loss = binary_cross_entropy(target_threshold=threshold, from_logits=True)

    def targets(x, y):
        """The images and the soft targets of a batch (None: plain integer labels)."""
        if mixing:
            replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
            key = tf.stack([tf.constant(seed, tf.int64) * 1000003 + tf.cast(optimizer.iterations, tf.int64),
                            replica])
            x, target = mix_batch(x, y, key, num_classes, mixup_alpha=float(cfg.mixup_alpha),
                                  cutmix_alpha=float(cfg.cutmix_alpha),
                                  switch_prob=float(cfg.mix_switch_prob),
                                  prob=float(cfg.mix_prob), label_smoothing=smoothing)
            return x, tf.cast(target, tf.float32)
        if smoothing or bce:  # timm's smoothing: off = s / C, on = 1 - s + s / C
            return x, tf.one_hot(y, num_classes) * (1 - smoothing) + smoothing / num_classes
        return x, None

    def forward_backward(x, y):
        x, target = targets(x, y)
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            if bce:  # per example: the mean over classes (timm's mean over both / batch)
                per_example = bce_loss.call(target, logits)
            elif target is not None:
                per_example = tf.nn.softmax_cross_entropy_with_logits(target, logits)
            else:
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            loss = tf.reduce_sum(per_example) / global_batch
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        if decayed:
            scale = optimizer.scale_loss(tf.constant(wd))  # wd x the loss scale, if any
            grads = [g + tf.cast(scale, g.dtype) * tf.cast(v, g.dtype) if d else g
                     for g, v, d in zip(grads, model.trainable_variables, decay)]
        if scaled_ids:
            grads = [g * tf.cast(lr_mult, g.dtype) if s else g for g, s in zip(grads, scales)]
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.float32))
        return grads, tf.reduce_sum(per_example), correct, tf.cast(tf.size(y), tf.float32)

    if cfg.jit:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def step(batch):
        x, y = batch
        grads, loss_sum, correct, count = forward_backward(x, y)
        if clip:
            # The norm of the global batch's gradient: sum the replicas' parts here, clip,
            # and hand the optimizer 1/R of it per replica (it sums them again).
            ctx = tf.distribute.get_replica_context()
            if replicas > 1:
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, clip)
            if replicas > 1:
                grads = [g / replicas for g in grads]
        optimizer.apply(grads, model.trainable_variables)
        return loss_sum, correct, count

    @tf.function
    def one_step():
        out = strategy.run(step, args=(next(iterator),))
        if ema is not None:  # after the update, in cross-replica context: every copy alike
            ema.update()
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in out]

    def chunk(n, stop=None):
        # One tf.function call per step, as Keras fit and train_on_batch run by default; the
        # sums stay tensors, so the host waits only when the caller reads them. Measured on
        # CPU: 16 steps in one call, in a tf.range loop or unrolled, were 20-30% slower per
        # step (TensorFlow's graph optimisations reach less inside the bigger graph).
        # ``stop(done)``, if given, is asked after each step but the last: True ends the
        # chunk there (a save on notice); ``chunk.steps`` is the number of steps run.
        # Summed in float64: the float32 sums of steps add exactly there, so the epoch's
        # totals do not depend on where chunks begin (a resumed epoch's equal the
        # uninterrupted one's).
        def step_sums():
            return [tf.cast(t, tf.float64) for t in one_step()]

        sums, done = step_sums(), 1
        while done < int(n) and not (stop is not None and stop(done)):
            sums = [a + b for a, b in zip(sums, step_sums())]
            done += 1
        chunk.steps = done
        return tuple(sums)

    return chunk



