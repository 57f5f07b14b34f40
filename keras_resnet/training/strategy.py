"""The ``tf.distribute`` strategy of a run, and who in a cluster writes the run directory.

TensorFlow is imported inside the functions: the multi-worker strategy must be created
before any other TensorFlow work, and the CLI sets TensorFlow's log level first.
"""

import json
import os
import shutil
import subprocess

from .config import STRATEGIES

# The task types MultiWorkerMirroredStrategy runs (no parameter servers, no evaluator).
TASK_TYPES = ("chief", "worker")
SLURM_PORT = 8888  # the first port of a node's tasks (TensorFlow's SlurmClusterResolver's)


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw or not raw.strip():
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    _check_tf_config(config)
    return config


def _check_address(where, address):
    host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"TF_CONFIG: {where} is {address!r}; expected an address host:port "
                         "(such as 10.0.0.2:2222)")


def _check_tf_config(config):
    """One line (ValueError) for a TF_CONFIG that does not describe a cluster this task
    belongs to."""
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        raise ValueError("TF_CONFIG has no 'cluster'; expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                         '"index": 0}}')
    cluster = config["cluster"]
    for kind, addresses in cluster.items():
        if kind not in TASK_TYPES:
            raise ValueError(f"TF_CONFIG: cluster task type {kind!r} is not supported; "
                             "MultiWorkerMirroredStrategy runs 'chief' (at most one) and "
                             "'worker' tasks")
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG: cluster[{kind!r}] is {addresses!r}; expected a list "
                             "of host:port addresses")
        for i, address in enumerate(addresses):
            _check_address(f"cluster[{kind!r}][{i}]", address)
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG: cluster['chief'] names {len(cluster['chief'])} tasks; "
                         "a cluster has at most one chief")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG: task is {task!r}; expected this process's place in the "
                         'cluster, such as {"type": "worker", "index": 0}')
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG: task type {kind!r} is not in the cluster, which has "
                         f"{', '.join(repr(k) for k in cluster)}")
    n = len(cluster[kind])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"TF_CONFIG: task index {index!r} is not in the cluster: "
                         f"{kind!r} has {n} task(s), indices 0-{n - 1}")


def _slurm_int(name, value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not an integer; is this a Slurm job step?") from None


def _slurm():
    """This process's place in a Slurm job step of more than one task (``srun``), as the
    keyword arguments of :class:`SlurmClusterResolver` plus ``procid``, or None outside
    Slurm or in a one-task step. Raises ValueError for variables that do not describe a
    step this process is a task of."""
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import (
        expand_hostlist, expand_tasks_per_node)

    env = os.environ
    if "SLURM_PROCID" not in env and "SLURM_STEP_NUM_TASKS" not in env:
        return None
    if "SLURM_STEP_NUM_TASKS" not in env:
        tasks = _slurm_int("SLURM_NTASKS", env.get("SLURM_NTASKS", "1"))
        if tasks > 1:
            raise ValueError(f"SLURM_NTASKS={tasks} but this process is not a task of a job "
                             "step (SLURM_STEP_NUM_TASKS is not set): start train.py with srun "
                             "in the allocation, one task per worker")
        return None
    tasks = _slurm_int("SLURM_STEP_NUM_TASKS", env["SLURM_STEP_NUM_TASKS"])
    if tasks <= 1:
        return None
    procid = _slurm_int("SLURM_PROCID", env.get("SLURM_PROCID"))
    if not 0 <= procid < tasks:
        raise ValueError(f"SLURM_PROCID={procid} is not a task of this job step of {tasks} "
                         f"tasks (0-{tasks - 1})")
    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", None):
        if name is None:
            raise ValueError("neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set: the "
                             "nodes of the job step, whose addresses the workers connect to")
        if env.get(name):
            break
    try:
        hosts = expand_hostlist(env[name])
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not a Slurm node list (such as "
                         "node[01-04],gpu7)") from None
    counts_name = "SLURM_STEP_TASKS_PER_NODE"
    if counts_name not in env:
        counts_name = "SLURM_TASKS_PER_NODE"
    try:
        counts = expand_tasks_per_node(env.get(counts_name, ""))
    except ValueError:
        raise ValueError(f"{counts_name}={env.get(counts_name)!r} is not a Slurm tasks-per-node "
                         "list (such as 2(x3),1)") from None
    if len(counts) != len(hosts) or sum(counts) != tasks or len(set(hosts)) != len(hosts):
        raise ValueError(f"{name}={env[name]!r} and {counts_name}={env[counts_name]!r} do not "
                         f"describe the {tasks} tasks of SLURM_STEP_NUM_TASKS")
    port = SLURM_PORT
    if env.get("SLURM_STEP_RESV_PORTS"):  # srun --resv-ports: ports Slurm reserved for the step
        port = _slurm_int("SLURM_STEP_RESV_PORTS",
                          env["SLURM_STEP_RESV_PORTS"].split(",")[0].split("-")[0])
    return dict(procid=procid, jobs={"worker": tasks}, port_base=port,
                tasks_per_node=dict(zip(hosts, counts)))


def _task_gpus():
    """GPUs this task may use: CUDA_VISIBLE_DEVICES as Slurm (or the user) set it, else what
    nvidia-smi lists, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def slurm_cluster_resolver():
    """TensorFlow's :class:`SlurmClusterResolver` for this Slurm job step (None outside
    one, or in a step of one task). Devices stay as Slurm gave them to the task
    (``CUDA_VISIBLE_DEVICES`` is not rewritten): run one task per node, using the node's
    GPUs, or bind GPUs to tasks with ``srun --gpus-per-task``."""
    import tensorflow as tf

    found = _slurm()
    if found is None:
        return None
    found.pop("procid")  # checked; the resolver reads SLURM_PROCID itself
    gpus = _task_gpus()
    most = max(found["tasks_per_node"].values())

    class _Resolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
        def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
            return {"GPU": gpus} if gpus else {}

    # gpus_per_node/gpus_per_task lay out one address (port) per task of a node; with
    # auto_set_gpu off they assign no device.
    resolver = _Resolver(gpus_per_node=most, gpus_per_task=1, auto_set_gpu=False, **found)
    resolver.cluster_spec()  # sets task_type and task_id (the task of rank SLURM_PROCID)
    return resolver


def describe_cluster(resolver, source, place=""):
    """``cluster from SOURCE: N tasks (worker x2); this process is worker 1 at host:port``."""
    spec = resolver.cluster_spec().as_dict()
    kinds = ", ".join(f"{k} x{len(v)}" for k, v in spec.items())
    address = spec[resolver.task_type][resolver.task_id]
    return (f"cluster from {source}: {sum(len(v) for v in spec.values())} tasks ({kinds}); this "
            f"process is {resolver.task_type} {resolver.task_id}{place} at {address}")


def make_strategy(name="auto", cpu_replicas=None, log=None):
    """A ``tf.distribute`` strategy.

    ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names more than one task, or
    this process is a task of a Slurm job step of several tasks (``srun``; read by
    TensorFlow's ``SlurmClusterResolver``), else MirroredStrategy when more than one GPU
    (or ``cpu_replicas`` > 1) is visible, else OneDeviceStrategy. ``mirrored`` uses every
    visible GPU, or ``cpu_replicas`` logical CPU devices on a machine without GPUs.
    ``multi_worker`` reads the cluster from ``TF_CONFIG`` (else Slurm's variables). ``tpu``
    connects to the TPU named by the environment. ``cpu_replicas`` splits the CPU into that
    many logical devices (must be set before TensorFlow starts its runtime): a way to
    exercise MirroredStrategy without GPUs.

    ``TF_CONFIG`` and Slurm's variables are checked: one that does not place this process
    in the cluster it names is a ValueError (one line). ``log``, if given, gets one line
    naming the cluster found and this process's place in it.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not supported; accepted: {', '.join(STRATEGIES)}")
    tf_config = _tf_config() if name in ("auto", "multi_worker", "one_device", "mirrored") else None
    tasks = sum(len(v) for v in tf_config["cluster"].values()) if tf_config else 0
    slurm = None if tasks > 1 else slurm_cluster_resolver()
    if name in ("one_device", "mirrored") and (tasks > 1 or slurm is not None):
        where = ("TF_CONFIG names " + f"{tasks} tasks" if tasks > 1 else
                 f"this process is task {slurm.task_id} of a Slurm job step of "
                 f"{slurm.cluster_spec().num_tasks('worker')} tasks")
        raise ValueError(f"--strategy {name} trains in this process alone, but {where}; use "
                         "--strategy auto (or multi_worker) to train as one of them")
    if cpu_replicas and cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError as e:
            raise RuntimeError(f"cpu_replicas must be set before TensorFlow initialises: {e}") from e
    if name == "auto" and (tasks > 1 or slurm is not None):
        name = "multi_worker"
    if name == "multi_worker":
        # Before anything lists devices: collectives must be configured at startup.
        if tasks >= 1:
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
            source, place = "TF_CONFIG", ""
        elif slurm is not None:
            resolver = slurm
            source = f"Slurm job {os.environ.get('SLURM_JOB_ID', '?')}"
            place = f" (SLURM_PROCID {os.environ['SLURM_PROCID']})"
        else:
            raise ValueError("strategy 'multi_worker' needs a cluster: TF_CONFIG with 'cluster' "
                             "and 'task', or a Slurm job step of several tasks (srun)")
        if log is not None:
            log(describe_cluster(resolver, source, place))
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
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
