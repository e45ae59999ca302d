"""scikit-learn on the matrices the trainer benchmark wrote: fit time (median of 3) and AUC.

Usage: python3 benches/sklearn_reference.py DIR L2 MAX_ITER DEPTH MIN_LEAF
(run by `cargo bench -p leitwerk-benches --bench trainer`; needs `pip install scikit-learn`).
"""
import json
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

d, l2, max_iter, depth, min_leaf = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
xt = np.loadtxt(f"{d}/x_train.csv", delimiter=",")
yt = np.loadtxt(f"{d}/y_train.csv", delimiter=",")
xv = np.loadtxt(f"{d}/x_valid.csv", delimiter=",")
yv = np.loadtxt(f"{d}/y_valid.csv", delimiter=",")


def timed(make):
    times, model = [], None
    for _ in range(3):
        start = time.perf_counter()
        model = make().fit(xt, yt)
        times.append(time.perf_counter() - start)
    return sorted(times)[1], roc_auc_score(yv, model.predict_proba(xv)[:, 1])


lr_time, lr_auc = timed(lambda: LogisticRegression(C=1.0 / l2, max_iter=max_iter))
dt_time, dt_auc = timed(lambda: DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf, random_state=0))
print(json.dumps({"logistic": {"seconds": lr_time, "auc": lr_auc}, "tree": {"seconds": dt_time, "auc": dt_auc}}))
