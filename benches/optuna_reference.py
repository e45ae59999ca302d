"""Optuna's TPE on the folds the tuning benchmark wrote, with the same budget, space and
LightGBM parameters as Leitwerk's search: the best mean fold AUC, its parameters, and the AUC
on the held-out validation rows of a model trained on all training rows with them.

Usage: python3 benches/optuna_reference.py DIR SEED...
DIR holds x_train.csv, y_train.csv, x_valid.csv, y_valid.csv, folds.json ([[fit rows, scored
rows], ...]) and search.json ({"trials", "base" (LightGBM parameters), "space" (Leitwerk's
spec.tuning.space)}), written by `cargo bench --bench tuning`; needs `pip install optuna
lightgbm==4.7.0 scikit-learn`. Prints one JSON list, one entry per seed.
"""
import json
import sys

import lightgbm as lgb
import numpy as np
import optuna
from sklearn.metrics import roc_auc_score

optuna.logging.set_verbosity(optuna.logging.WARNING)
d = sys.argv[1]
load = lambda name: np.loadtxt(f"{d}/{name}.csv", delimiter=",", dtype=np.float32, ndmin=2)
xt, xv = load("x_train"), load("x_valid")
yt, yv = np.loadtxt(f"{d}/y_train.csv"), np.loadtxt(f"{d}/y_valid.csv")
folds = json.load(open(f"{d}/folds.json"))
search = json.load(open(f"{d}/search.json"))
NAMES = {"learningRate": "learning_rate", "numLeaves": "num_leaves", "minRowsPerLeaf": "min_data_in_leaf",
         "l1": "lambda_l1", "l2": "lambda_l2", "columnSubsample": "feature_fraction",
         "rowSubsample": "bagging_fraction", "maxDepth": "max_depth", "rounds": "num_iterations"}
WHOLE = {"numLeaves", "minRowsPerLeaf", "maxDepth", "rounds"}


def params_of(values):
    p = dict(search["base"])
    for k, v in values.items():
        p[NAMES[k]] = int(round(v)) if k in WHOLE else v
        if k == "rowSubsample":
            p["bagging_freq"] = 1 if v < 1 else 0
    return p


def fit(p, x, y):
    p = dict(p)
    rounds = p.pop("num_iterations")
    return lgb.train(p, lgb.Dataset(x, y), num_boost_round=rounds)


def suggest(trial):
    values = {}
    for dim in search["space"]:
        name = dim["parameter"]
        if "choices" in dim:
            values[name] = trial.suggest_categorical(name, dim["choices"])
        else:
            values[name] = trial.suggest_float(name, dim["min"], dim["max"], log=dim.get("scale") == "Log")
    return values


def objective(trial):
    p = params_of(suggest(trial))
    scores = []
    for fit_rows, scored in folds:
        booster = fit(p, xt[fit_rows], yt[fit_rows])
        scores.append(roc_auc_score(yt[scored], booster.predict(xt[scored])))
    return float(np.mean(scores))


out = []
for seed in sys.argv[2:]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=int(seed)))
    study.optimize(objective, n_trials=search["trials"])
    best = study.best_params
    held_out = roc_auc_score(yv, fit(params_of(best), xt, yt).predict(xv))
    out.append({"seed": int(seed), "best": study.best_value, "params": best, "heldOut": held_out})
print(json.dumps(out))
