"""Cluster descriptions: a Slurm job step read through TensorFlow's SlurmClusterResolver, and
TF_CONFIG / Slurm variables that do not place this process in the cluster they name, refused
with one line and exit status 2 before anything trains."""

import json

import pytest

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
              "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_STEP_TASKS_PER_NODE",
              "SLURM_TASKS_PER_NODE", "SLURM_STEP_RESV_PORTS", "TF_CONFIG")


@pytest.fixture
def clean_env(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return monkeypatch


def test_a_slurm_job_step_becomes_a_cluster_of_workers(clean_env):
    """Four tasks on two nodes (srun -N2 --ntasks-per-node 2): each task's place and every
    address follow from Slurm's variables alone, as TensorFlow's resolver lays them out
    (ports from the step's reserved ones, one per task of a node)."""
    import tensorflow as tf

    from keras_resnet.training.strategy import describe_cluster, slurm_cluster_resolver

    clean_env.setenv("SLURM_JOB_ID", "4242")
    clean_env.setenv("SLURM_STEP_NUM_TASKS", "4")
    clean_env.setenv("SLURM_STEP_NODELIST", "gpu[07-08]")
    clean_env.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
    clean_env.setenv("SLURM_STEP_RESV_PORTS", "12300-12301")
    places = []
    for procid in range(4):
        clean_env.setenv("SLURM_PROCID", str(procid))
        resolver = slurm_cluster_resolver()
        assert isinstance(resolver, tf.distribute.cluster_resolver.SlurmClusterResolver)
        assert resolver.cluster_spec().as_dict() == {
            "worker": ["gpu07:12300", "gpu07:12301", "gpu08:12300", "gpu08:12301"]}
        assert resolver.num_accelerators() == {}  # CUDA_VISIBLE_DEVICES="": no GPU
        places.append((resolver.task_type, resolver.task_id))
    assert places == [("worker", i) for i in range(4)]
    assert describe_cluster(resolver, "Slurm job 4242", " (SLURM_PROCID 3)") == (
        "cluster from Slurm job 4242: 4 tasks (worker x4); this process is worker 3 "
        "(SLURM_PROCID 3) at gpu08:12301")
    # A step of one task, or no Slurm at all: no cluster.
    clean_env.setenv("SLURM_STEP_NUM_TASKS", "1")
    clean_env.setenv("SLURM_PROCID", "0")
    assert slurm_cluster_resolver() is None
    for name in SLURM_VARS:
        clean_env.delenv(name, raising=False)
    assert slurm_cluster_resolver() is None


TWO = ["127.0.0.1:20001", "127.0.0.1:20002"]
SLURM_STEP = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "127.0.0.1",
              "SLURM_STEP_TASKS_PER_NODE": "2"}


@pytest.mark.parametrize("env,args,message", [
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO}, "task": {"type": "worker", "index": 2}})},
     [], "TF_CONFIG: task index 2 is not in the cluster: 'worker' has 2 task(s), indices 0-1"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO}, "task": {"type": "chief", "index": 0}})},
     [], "TF_CONFIG: task type 'chief' is not in the cluster, which has 'worker'"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": [TWO[0], ""]}, "task": {"type": "worker", "index": 0}})},
     [], "TF_CONFIG: cluster['worker'][1] is ''; expected an address host:port"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO, "ps": [TWO[0]]}, "task": {"type": "worker", "index": 0}})},
     [], "TF_CONFIG: cluster task type 'ps' is not supported"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO}})},
     [], "TF_CONFIG: task is None; expected this process's place in the cluster"),
    ({"TF_CONFIG": "{'cluster': "}, [], "TF_CONFIG is not valid JSON"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO}, "task": {"type": "worker", "index": 1}})},
     ["--strategy", "mirrored"], "--strategy mirrored trains in this process alone, but TF_CONFIG "
                                 "names 2 tasks"),
    (dict(SLURM_STEP, SLURM_PROCID="2"), [],
     "SLURM_PROCID=2 is not a task of this job step of 2 tasks (0-1)"),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, [],
     "SLURM_NTASKS=2 but this process is not a task of a job step"),
    (dict(SLURM_STEP, SLURM_PROCID="0", SLURM_STEP_NODELIST="node[1-"), [],
     "SLURM_STEP_NODELIST='node[1-' is not a Slurm node list"),
    (dict(SLURM_STEP, SLURM_PROCID="0", SLURM_STEP_NODELIST="n[1-2]"), [],
     "SLURM_STEP_NODELIST='n[1-2]' and SLURM_STEP_TASKS_PER_NODE='2' do not describe the 2 tasks"),
    (dict(SLURM_STEP, SLURM_PROCID="0", SLURM_STEP_NODELIST=""), [],
     "neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set"),
    (dict(SLURM_STEP, SLURM_PROCID="1"), ["--strategy", "one_device"],
     "--strategy one_device trains in this process alone, but this process is task 1 of a "
     "Slurm job step of 2 tasks"),
], ids=["tf-index", "tf-type", "tf-address", "tf-ps", "tf-no-task", "tf-json", "tf-mirrored",
        "slurm-procid", "slurm-no-srun", "slurm-nodelist", "slurm-counts", "slurm-no-nodes",
        "slurm-one-device"])
def test_a_cluster_that_does_not_hold_this_task_is_one_line_exit_2(clean_env, tmp_path, capsys,
                                                                   env, args, message):
    from keras_resnet.train import main

    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.chdir(tmp_path)
    rc = main(["--epochs", "1", "--run-dir", str(tmp_path / "run"), *args], prog="train.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error: ") and message in err[0], err
    assert not (tmp_path / "run").exists()
