"""One ``JALClassifier()`` fit (JAL-CE, its settings chosen, calibrated) on the noisy-digits split of
``choose_a.py`` (symmetric 0.4, seed 0); prints its seconds. Time the whole process, imports
included, against another tree with ``farm-bench``:

    farm-bench -n 5 --vs "env PYTHONPATH=OTHER_TREE python benchmarks/fit_jal_once.py" -- python benchmarks/fit_jal_once.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_split import digits_split  # noqa: E402

from jal_plugins import JALClassifier, create_noise_model  # noqa: E402

x, y, train, test = digits_split()
noisy = create_noise_model("symmetric", rate=0.4, exact=False).apply(y[train], 10, seed=0)
start = time.perf_counter()
clf = JALClassifier(random_state=0).fit(x[train], noisy)
print(f"{time.perf_counter() - start:.2f} s, a={clf.a_}, test {clf.score(x[test], y[test]):.3f}")
