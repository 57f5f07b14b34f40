"""The ``tf.distribute`` strategy of a run, and who in a cluster writes the run directory.

TensorFlow is imported inside the functions: the multi-worker strategy must be created
before any other TensorFlow work, and the CLI sets TensorFlow's log level first.
"""

import json
import os

from .config import STRATEGIES

def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e


def make_strategy(name="auto", cpu_replicas=None):
    """A ``tf.distribute`` strategy.

    ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names more than one task,
    else MirroredStrategy when more than one GPU (or ``cpu_replicas`` > 1) is visible,
    else OneDeviceStrategy. ``mirrored`` uses every visible GPU, or ``cpu_replicas``
    logical CPU devices on a machine without GPUs. ``multi_worker`` reads the cluster
    from ``TF_CONFIG``. ``tpu`` connects to the TPU named by the environment.
    ``cpu_replicas`` splits the CPU into that many logical devices (must be set before
    TensorFlow starts its runtime): a way to exercise MirroredStrategy without GPUs.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not supported; accepted: {', '.join(STRATEGIES)}")
    if cpu_replicas and cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError as e:
            raise RuntimeError(f"cpu_replicas must be set before TensorFlow initialises: {e}") from e
    tf_config = _tf_config()
    if name == "auto":
        cluster = (tf_config or {}).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
    if name == "multi_worker":
        # Before anything lists devices: collectives must be configured at startup.
        if not tf_config or "cluster" not in tf_config or "task" not in tf_config:
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG with 'cluster' and 'task' "
                             "(see tf.distribute.cluster_resolver.TFConfigClusterResolver)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy):
    """The public ``tf.distribute`` class name of ``strategy``."""
    import tensorflow as tf

    for cls in ("TPUStrategy", "MultiWorkerMirroredStrategy", "MirroredStrategy",
                "OneDeviceStrategy"):
        if isinstance(strategy, getattr(tf.distribute, cls)):
            return cls
    return type(strategy).__name__


def is_chief(strategy):
    """Whether this process writes the run directory (the chief, or worker 0 without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())




def num_workers(strategy):
    """Processes in the cluster that run training (1 without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(v) for k, v in spec.items() if k in ("chief", "worker")))


def task_label(strategy):
    """``worker_1``-style name of this process (``chief`` without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return "chief"
    return f"{resolver.task_type}_{resolver.task_id}"
