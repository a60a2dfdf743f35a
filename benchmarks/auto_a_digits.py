"""Automatic `a` vs fixed `a` for JALClassifier on noisy digits (scaled to [0, 1], 500 held out)."""
import numpy as np, time
from sklearn.datasets import load_digits
from jal_plugins import JALClassifier, create_noise_model
X, y = load_digits(return_X_y=True); X = X / 16.0
rng = np.random.default_rng(0); idx = rng.permutation(len(y)); te, tr = idx[:500], idx[500:]
for rate in (0.2, 0.4, 0.6):
    noisy = create_noise_model("symmetric", rate=rate, exact=False).apply(y[tr], 10, seed=0)
    row = {}
    for a in (1.5, 3, 10, 30, 100):
        row[a] = JALClassifier(loss_params={"a": a}, random_state=0).fit(X[tr], noisy).score(X[te], y[te])
    t=time.time(); clf = JALClassifier(loss_params={"a": "auto"}, random_state=0).fit(X[tr], noisy)
    print(rate, {k: round(v,3) for k,v in row.items()}, "auto a=%.2f acc=%.3f (%.1fs)" % (clf.a_, clf.score(X[te], y[te]), time.time()-t))
