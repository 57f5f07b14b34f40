"""Runs one worker of a training run and dumps its replicas' variables (test helper).

usage: python _train_worker.py OUT.npz key=value ...   (TrainConfig fields, JSON values)
"""
import json
import sys

import numpy as np


def main():
    out = sys.argv[1]
    kwargs = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    from keras_resnet.training import train

    result = train(**kwargs)
    strategy, model = result.strategy, result.model
    arrays = {}
    for kind, variables in (("t", model.trainable_variables), ("n", model.non_trainable_variables)):
        for i, v in enumerate(variables):
            for r, value in enumerate(strategy.experimental_local_results(v.value)):
                arrays[f"{kind}{i}_r{r}"] = value.numpy()
    arrays["test_accuracy"] = np.float64(result.test_accuracy)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main()
