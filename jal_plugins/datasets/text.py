"""A text column as features: TF-IDF (scikit-learn's ``TfidfVectorizer``) fitted on the training texts only.

The features become dense float32 rows, in memory and on the device, ``max_features`` floats an
example: the default, 2,000, holds 50,000 texts in 400 MB. They are not standardised: a TF-IDF row
has unit length already, and dividing by a rare term's small spread would make it dominate.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_FEATURES = 2000


def texts(values, column: str, what: str) -> np.ndarray:
    """The strings of ``column`` (a pyarrow array) as an object array; a missing value or a column that is
    not text is an error naming it."""
    import pyarrow as pa

    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise ValueError(f"text_column {column!r} of {what} is not text ({values.type})")
    rows = values.to_pylist()
    missing = [row for row, text in enumerate(rows) if text is None]
    if missing:
        raise ValueError(f"text_column {column!r} of {what} has {len(missing)} missing value(s), "
                         f"the first at row {missing[0]}")  # fmt: skip
    return np.asarray(rows, dtype=object)


def tfidf(max_features: int):
    """A ``featurize`` for ``labelled.dataset``: ``(train, test)`` texts -> TF-IDF float32 rows (and no
    ``scale``: the texts are shown instead), the vocabulary (the ``max_features`` most frequent
    terms) taken from the training texts."""
    from jal_plugins.checks import integer

    integer("max_features", max_features, low=1)
    return functools.partial(_tfidf, max_features)


def _tfidf(max_features: int, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, dtype=np.float32)
    return vectorizer.fit_transform(train).toarray(), vectorizer.transform(test).toarray(), None
