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
            deterministic=True if cfg.deterministic else None)

    dataset_fn.shard = (1, 0)
    return dataset_fn


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
                     num_classes, backbone=(), lr_mult=1.0):
    """``chunk(n)``: ``n`` training steps on batches from ``iterator``; returns the sums of
    the loss, correct predictions and examples over them (tensors).

    Weight decay on ``decayed`` is the paper's L2 term ``0.5 * wd * ||w||^2`` in the loss,
    applied as its gradient ``wd * w`` (the same update, without the squares and their
    backward pass over every kernel, which cost 10-30% of a CPU step).

    ``backbone`` (variables) get their gradients, weight decay included, multiplied by
    ``lr_mult``: with SGD that is exactly their learning rate times ``lr_mult``
    (fine-tuning's lower backbone rate).
    """
    replicas = strategy.num_replicas_in_sync
    smoothing = float(cfg.label_smoothing)
    # Gradients are summed over replicas, hence the division.
    wd = float(cfg.weight_decay) / replicas
    decayed_ids = {id(v) for v in decayed}
    decay = [id(v) in decayed_ids for v in model.trainable_variables]
    scaled_ids = {id(v) for v in backbone} if lr_mult != 1.0 else set()
    scales = [id(v) in scaled_ids for v in model.trainable_variables]

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            if smoothing:
                target = tf.one_hot(y, num_classes) * (1 - smoothing) + smoothing / num_classes
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
        optimizer.apply(grads, model.trainable_variables)
        return loss_sum, correct, count

    @tf.function
    def one_step():
        out = strategy.run(step, args=(next(iterator),))
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


