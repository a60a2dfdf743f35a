"""``table``: a CSV or parquet file of numeric feature columns and a label column, read through ``datasets``.

The column helpers here also serve the ``hf`` plugin: labels from a ``ClassLabel`` (its names) or any
column of values (the values, sorted, as names); features from numeric columns only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jal_plugins.datasets.arrays import ArrayDataset


def column_list(name: str, value) -> list[str] | None:
    """A list of column names, given as a list or as one comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [c.strip() for c in value.split(",") if c.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{name} must be a list of column names or a comma-separated string, got {name}={value!r}")
    return list(value)


def require_column(ds, column: str, option: str, what: str) -> None:
    """An error naming ``column``, the option that asked for it and the columns there are."""
    if column not in ds.column_names:
        raise ValueError(f"{option} {column!r} is not a column of {what} (columns: {', '.join(ds.column_names)})")


def feature_columns_of(ds, label_column: str, given, where: str) -> list[str]:
    """``given`` (a list or comma-separated names), default every column but the label, each checked to exist."""
    columns = column_list("feature_columns", given) or [c for c in ds.column_names if c != label_column]
    if label_column in columns:
        raise ValueError(f"label_column {label_column!r} cannot also be a feature column")
    for column in columns:
        require_column(ds, column, "feature column", where)
    return columns


def _arrow(parts, column: str):
    import pyarrow as pa

    tables = [ds.select_columns([column]).with_format("arrow")[:] for ds in parts]
    return pa.chunked_array([chunk for table in tables for chunk in table[column].chunks])


def labels(parts, column: str, what: str) -> tuple[np.ndarray, list[str]]:
    """Codes 0..K-1 and class names of ``column`` over the datasets ``parts`` (one numbering for all).

    A ``ClassLabel`` keeps its names (classes that never occur are dropped, -1 is a missing label);
    any other column is numbered by its values, sorted.
    """
    import datasets

    from jal_plugins.datasets.labelled import check_classes, class_codes

    what = f"label_column {column!r} of {what}"
    feature = parts[0].features[column]
    values = _arrow(parts, column).to_pylist()
    if not isinstance(feature, datasets.ClassLabel):
        return class_codes(values, what)
    codes = np.asarray([-1 if v is None else v for v in values], np.int64)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise ValueError(f"{what} has {missing.size} missing value(s), the first at row {missing[0]}")
    used = np.unique(codes)
    names = [feature.names[k] for k in used]
    check_classes(names, what)
    return np.searchsorted(used, codes), names


def features(parts, columns: list[str], what: str) -> np.ndarray:
    """The ``columns`` as float rows: numeric columns, and columns of same-length numeric vectors
    (embeddings) giving several features each; a missing, infinite or ragged value is an error naming
    the column and the row."""
    return np.concatenate([_column(_arrow(parts, column), column, what) for column in columns], 1)


def _column(values, column: str, what: str) -> np.ndarray:
    """One column as an ``(N, D)`` float array (D = 1 for numbers, the vector length for vectors)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    name, kind, rows = f"feature column {column!r} of {what}", values.type, len(values)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        values = values.combine_chunks()
        missing = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        if missing.size:
            raise ValueError(f"{name} has {missing.size} missing vector(s), the first at row {missing[0]}")
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        ragged = np.flatnonzero(lengths != lengths[0])
        if ragged.size:
            raise ValueError(f"{name} holds vectors of different lengths: {lengths[0]} at row 0, "
                             f"{lengths[ragged[0]]} at row {ragged[0]}")  # fmt: skip
        kind, values = kind.value_type, values.flatten()
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise ValueError(f"{name} is not numeric ({values.type}); "
                         "encode it as numbers or leave it out of feature_columns")  # fmt: skip
    array = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(rows, -1)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} has {bad.sum()} missing or infinite value(s), "
                         f"the first at row {np.flatnonzero(bad.any(1))[0]}")  # fmt: skip
    return array


def inputs(parts, label_column: str, feature_columns, text_column: str | None, max_features: int | None,
           what: str) -> tuple[np.ndarray, dict]:  # fmt: skip
    """``(rows, options of labelled.dataset)`` over the datasets ``parts``: the texts of ``text_column``
    (made TF-IDF features once split), else the numeric ``feature_columns`` (default: all but the label)."""
    from jal_plugins.datasets import text

    if text_column is None:
        if max_features is not None:
            raise ValueError(f"max_features={max_features!r} sizes a text_column's vocabulary; give text_column=NAME")
        columns = [feature_columns_of(ds, label_column, feature_columns, what) for ds in parts][0]
        return features(parts, columns, what), {}
    if feature_columns is not None:
        raise ValueError(f"give text_column or feature_columns, not both (text_column={text_column!r}, "
                         f"feature_columns={feature_columns!r})")  # fmt: skip
    for ds in parts:
        require_column(ds, text_column, "text_column", what)
    if text_column == label_column:
        raise ValueError(f"label_column {label_column!r} cannot also be the text_column")
    rows = text.texts(_arrow(parts, text_column), text_column, what)
    return rows, {"featurize": text.tfidf(text.MAX_FEATURES if max_features is None else max_features), "texts": rows}


def table(path: str, label_column: str | None = None, feature_columns=None, text_column: str | None = None,
          max_features: int | None = None, test_fraction: float = 0.2, split_seed: int = 0,
          cache_dir: str | None = None, corrections: str | None = None) -> ArrayDataset:  # fmt: skip
    """A CSV, TSV, parquet or arrow file: ``label_column`` and numeric ``feature_columns`` (default: all
    the others; a column of same-length vectors, such as embeddings, gives a feature per element),
    standardised with the training rows' statistics; a stratified ``test_fraction`` held out.

    ``text_column``: the features are instead the TF-IDF of that column's texts, ``max_features``
    terms (default ``text.MAX_FEATURES``), fitted on the training rows (``example_texts`` gives the
    texts back). ``corrections``: a reviewed ``decisions.csv`` relabels and drops examples
    (``jal_plugins.datasets.corrections``). Examples are numbered and named by their row (0 = the
    first data row). ``cache_dir`` is where ``datasets`` keeps its Arrow copy of the file.
    """
    from jal_plugins.datasets.corrections import read
    from jal_plugins.datasets.hub import load_hub
    from jal_plugins.datasets.labelled import split_dataset

    decisions = None if corrections is None else read(corrections)
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"table: file {str(path)!r} does not exist")
    if label_column is None:
        raise ValueError(f"table {str(path)!r} needs label_column=NAME, the column that holds the labels")
    (ds,) = load_hub(str(file), cache_dir=cache_dir).values()
    require_column(ds, label_column, "label_column", str(path))
    x, options = inputs([ds], label_column, feature_columns, text_column, max_features, str(path))
    y, names = labels([ds], label_column, str(path))
    return split_dataset(file.stem, x, y, names, test_fraction, split_seed, corrections=decisions, **options)
