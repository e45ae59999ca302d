"""LightGBM 4.7 (Python) on the matrices the trainer benchmark wrote: fit time (median of 3)
and validation AUC with the same parameters as the trainer's LightGBM.

Usage: python3 benches/lightgbm_reference.py CASES.json
CASES.json: [{"dir": DIR, "params": {LightGBM parameters, num_iterations included}}, ...];
each DIR holds x_train.csv, y_train.csv, x_valid.csv, y_valid.csv (run by
`cargo bench --bench trainer`; needs `pip install lightgbm==4.7.0 scikit-learn`).
Prints one JSON list: [{"seconds": ..., "auc": ..., "trees": ...}, ...].
"""
import json
import sys
import time

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

assert lgb.__version__.startswith("4.7"), f"LightGBM {lgb.__version__}, not 4.7"
results = []
for case in json.load(open(sys.argv[1])):
    d, params = case["dir"], dict(case["params"])
    rounds = params.pop("num_iterations")
    # The trainer hands LightGBM float32 rows; so does this.
    load = lambda name: np.loadtxt(f"{d}/{name}.csv", delimiter=",", dtype=np.float32, ndmin=2)
    xt, xv = load("x_train"), load("x_valid")
    yt = np.loadtxt(f"{d}/y_train.csv")
    yv = np.loadtxt(f"{d}/y_valid.csv")
    times, booster = [], None
    for _ in range(3):
        start = time.perf_counter()
        booster = lgb.train(params, lgb.Dataset(xt, yt), num_boost_round=rounds)
        times.append(time.perf_counter() - start)
    results.append({
        "seconds": sorted(times)[1],
        "auc": roc_auc_score(yv, booster.predict(xv)),
        "trees": booster.num_trees(),
    })
print(json.dumps(results))
