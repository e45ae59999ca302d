"""The shap package's TreeExplainer on the trainer's LightGBM model: SHAP values of the rows
the trainer benchmark wrote, to compare with LightGBM's own contributions that the trainer
reports (issue 14 point 3: max |difference| <= 1e-6).

Usage: python3 benches/shap_reference.py MODEL.txt X.csv OUT.csv
(run by `cargo bench --bench trainer`; needs `pip install shap lightgbm==4.7.0`).
Writes OUT.csv: one row per input row, one column per feature, then the expected value.
"""
import sys

import lightgbm as lgb
import numpy as np
import shap

model, rows, out = sys.argv[1:]
booster = lgb.Booster(model_file=model)
x = np.loadtxt(rows, delimiter=",", dtype=np.float32, ndmin=2)
explainer = shap.TreeExplainer(booster)
values = explainer.shap_values(x)
if isinstance(values, list):  # older shap: one array per class
    values = values[-1]
expected = np.ravel(explainer.expected_value)[-1]
np.savetxt(out, np.hstack([values, np.full((len(x), 1), expected)]), delimiter=",", fmt="%.17g")
print(shap.__version__)
