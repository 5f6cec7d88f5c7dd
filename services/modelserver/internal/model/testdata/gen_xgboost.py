#!/usr/bin/env python3
"""Trains the XGBoost test model and writes its reference predictions.

Run with XGBoost's own Python package (Debian: apt-get install python3-xgboost):
    /usr/bin/python3 gen_xgboost.py   (the system Python, where Debian installs the package)
Writes xgb_fraud/model.json (Booster.save_model) and xgb_fraud/reference.json
(rows of inputs and XGBoost's own predictions for them), which the Go
evaluator's tests compare against.
"""
import json
import numpy as np
import xgboost as xgb

names = ["txn_count_10m", "txn_sum_1h", "country_us", "amount"]
rng = np.random.default_rng(7)
n = 5000
count = rng.poisson(1.5, n).astype(np.float64)
total = rng.gamma(2.0, 60.0, n)
us = (rng.random(n) < 0.6).astype(np.float64)
amount = rng.lognormal(3.5, 1.2, n)
logit = -3 + 0.8 * count + 0.004 * total - 0.7 * us + 0.6 * np.log1p(amount) - 2.0
y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
X = np.column_stack([count, total, us, amount])

booster = xgb.train(
    {"objective": "binary:logistic", "max_depth": 5, "eta": 0.1, "seed": 7, "tree_method": "hist"},
    xgb.DMatrix(X, label=y, feature_names=names),
    num_boost_round=100,
)
booster.save_model("xgb_fraud/model.json")

# Reference rows: fresh samples, exact split thresholds, and missing values.
m = 300
R = np.column_stack([
    rng.poisson(1.5, m).astype(np.float64),
    rng.gamma(2.0, 60.0, m),
    (rng.random(m) < 0.6).astype(np.float64),
    rng.lognormal(3.5, 1.2, m),
])
R[:10, 3] = np.nan
R[10:20, 0] = np.nan
pred = booster.predict(xgb.DMatrix(R, feature_names=names))
rows = [[None if np.isnan(v) else float(v) for v in r] for r in R]
with open("xgb_fraud/reference.json", "w") as f:
    json.dump({"xgboost_version": xgb.__version__, "inputs": names, "rows": rows,
               "predictions": [float(p) for p in pred]}, f)
print("trees:", len(booster.get_dump()), "xgboost", xgb.__version__)
