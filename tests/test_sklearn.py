"""JALClassifier against scikit-learn's own checks, pipelines, and the real cleanlab."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import estimator_checks_generator

from jal_plugins import JALClassifier

EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": "mini-batch SGD: integer weights are not repeated rows",
    "check_sample_weight_equivalence_on_sparse_data": "mini-batch SGD: integer weights are not repeated rows",
}


def _checks(estimator, sparse: bool) -> list:
    """scikit-learn's checks of ``estimator``: those of sparse input, or all the others."""
    checks = estimator_checks_generator(estimator, mark="xfail", expected_failed_checks=EXPECTED_FAILURES)
    return [item for item in checks if ("sparse" in getattr(item, "values", item)[1].func.__name__) == sparse]


def _check_id(value) -> str:
    return value.func.__name__ if hasattr(value, "func") else repr(value).replace(" ", "")


# The sparse checks fit a dozen formats of one matrix: they check a fast estimator (no search, no
# calibration), which reads sparse input the same way.
@pytest.mark.parametrize("estimator, check", _checks(JALClassifier(epochs=20, random_state=0), sparse=False)
                         + _checks(JALClassifier(epochs=5, random_state=0, tune=False, calibrate=False), sparse=True),
                         ids=_check_id)  # fmt: skip
def test_sklearn_compliance(estimator, check):
    check(estimator)


def test_cleanlearning_finds_flipped_labels(noisy_digits):
    from cleanlab.classification import CleanLearning

    x, noisy, clean, x_test, y_test = noisy_digits
    cl = CleanLearning(JALClassifier(random_state=0), cv_n_folds=3, seed=0).fit(x, noisy)
    issues = cl.get_label_issues()["is_label_issue"].to_numpy()
    flipped = noisy != clean
    assert cl.score(x_test, y_test) >= 0.85
    assert (issues & flipped).sum() / issues.sum() >= 0.7
    assert (issues & flipped).sum() / flipped.sum() >= 0.7


def test_auto_a_lands_in_the_range_that_trains(noisy_digits):
    x, noisy, _, x_test, y_test = noisy_digits
    auto = JALClassifier(loss_params={"a": "auto"}, random_state=0).fit(x, noisy)
    ce = JALClassifier(loss="ce", random_state=0, tune=False).fit(x, noisy)
    assert 2.0 <= auto.a_ <= 50.0 and 0.2 < auto.noise_rate_ < 0.6
    assert auto.score(x_test, y_test) >= 0.88 and auto.score(x_test, y_test) > ce.score(x_test, y_test) + 0.05


def test_helpers(noisy_digits):
    from jal_plugins.adapters.cleanlab import cross_val_pred_probs, estimate_transition_matrix, find_label_issues

    x, noisy, clean, *_ = noisy_digits
    probs = cross_val_pred_probs(JALClassifier(random_state=0), x, noisy, cv=3, seed=0)
    assert probs.shape == (len(noisy), 10) and np.allclose(probs.sum(1), 1)
    t = estimate_transition_matrix(y=noisy, pred_probs=probs)
    assert np.allclose(t.sum(1), 1) and np.all(np.diag(t) > 0.4)
    mask = find_label_issues(x[:600], noisy[:600], cv=3, seed=0)
    assert mask.dtype == bool and ((noisy[:600] != clean[:600]) & mask).sum() > 0.5 * mask.sum()


def test_string_labels_pickle_and_errors():
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = JALClassifier(random_state=0, epochs=40)
    with pytest.raises(NotFittedError):
        clf.predict(x)
    clf.fit(x, names)
    assert set(clf.predict(x)) <= set(names) and clf.score(x, names) > 0.8
    proba = clf.predict_proba(x)
    assert proba.dtype == np.float64 and np.allclose(proba.sum(1), 1)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(x), proba)
    assert str(clone.device_) == "cpu" and len(clf.history_) == 2 * 40  # choosing a, then the refit
    with pytest.raises(ValueError, match="4 features"):
        clf.predict(x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        JALClassifier().fit(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="1 class"):
        JALClassifier().fit(x, np.zeros(len(x)))
    with pytest.raises(KeyError, match="jal-cee"):
        JALClassifier(loss="jal-cee").fit(x, y)
    with pytest.raises(ValueError, match="a=0.5"):
        JALClassifier(loss_params={"a": 0.5}).fit(x, y)


def test_pipeline_gridsearch_and_weight_routing():
    import sklearn

    x, y = load_iris(return_X_y=True)
    search = GridSearchCV(make_pipeline(StandardScaler(), JALClassifier(random_state=0, epochs=30)),
                          {"jalclassifier__loss": ["ce", "jal-ce"]}, cv=3)  # fmt: skip
    search.fit(x, y)
    assert search.best_score_ > 0.8
    with sklearn.config_context(enable_metadata_routing=True):
        est = JALClassifier(random_state=0, epochs=30).set_fit_request(sample_weight=True)
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), est)
        weights = np.where(y == 0, 0.0, 1.0)
        pipe.fit(x, y, sample_weight=weights)
        assert pipe.score(x, y) > 0.5


def test_partial_fit_warm_start_and_classes():
    x, y = load_iris(return_X_y=True)
    clf = JALClassifier(random_state=0, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes must be passed"):
        JALClassifier().partial_fit(x, y)
    for _ in range(3):
        clf.partial_fit(x[y < 2], y[y < 2])
    assert clf.predict_proba(x).shape == (150, 3) and len(clf.history_) == 3
    warm = JALClassifier(random_state=0, epochs=5, warm_start=True).fit(x, y)
    first = warm.module_
    warm.fit(x, y)
    assert warm.module_ is first and len(warm.history_) == 2 * 5 + 5


def test_images_dataframes_and_torch_datasets():
    import pandas as pd

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[:, None]
    clf = JALClassifier(random_state=0, epochs=15).fit(images[:1000], digits.target[:1000])
    assert clf.module_.__class__.__name__ == "CNN4" and clf.score(images[1000:], digits.target[1000:]) > 0.85
    frame = pd.DataFrame(digits.data[:, :10], columns=[f"px{i}" for i in range(10)])
    assert list(JALClassifier(epochs=2).fit(frame, digits.target).feature_names_in_) == list(frame.columns)
    dataset = torch.utils.data.TensorDataset(torch.tensor(digits.data[:200], dtype=torch.float32), torch.zeros(200))
    fitted = JALClassifier(epochs=2, random_state=0).fit(dataset, digits.target[:200])
    assert set(fitted.classes_) == set(digits.target[:200])  # the given y, not the dataset's zeros


FAST = {"epochs": 10, "random_state": 0, "tune": False, "calibrate": False}


def test_text_pipeline_with_sparse_tfidf_gridsearch_and_cleanlearning(sentences):
    from cleanlab.classification import CleanLearning
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, noisy, clean = sentences(360, noise=0.2)
    test_texts, _, test_topics = sentences(120, seed=1)
    pipe = make_pipeline(TfidfVectorizer(), JALClassifier(**FAST)).fit(texts, noisy)
    proba = pipe.predict_proba(test_texts)
    assert proba.shape == (120, 3) and np.allclose(proba.sum(1), 1)
    assert set(pipe.predict(test_texts)) <= set(clean) and pipe.score(test_texts, test_topics) >= 0.9
    search = GridSearchCV(make_pipeline(TfidfVectorizer(), JALClassifier(**FAST)),
                          {"tfidfvectorizer__max_features": [5, None]}, cv=2).fit(texts, noisy)  # fmt: skip
    assert search.best_params_ == {"tfidfvectorizer__max_features": None}  # 5 terms cannot tell 3 topics apart
    codes = np.searchsorted(np.unique(clean), noisy)
    cl = CleanLearning(make_pipeline(TfidfVectorizer(), JALClassifier(**FAST)), cv_n_folds=3, seed=0).fit(texts, codes)
    issues = cl.get_label_issues()["is_label_issue"].to_numpy()
    flipped = noisy != clean
    assert (issues & flipped).sum() / issues.sum() >= 0.7 and (issues & flipped).sum() / flipped.sum() >= 0.5


def test_sparse_input_trains_as_its_dense_rows_would(sentences):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, noisy, _ = sentences(200, noise=0.2)
    vectorizer = TfidfVectorizer().fit(texts[:150])
    train, test = vectorizer.transform(texts[:150]), vectorizer.transform(texts[150:])
    calibrated = {**FAST, "calibrate": True, "epochs": 5}  # calibration cross-fits: subsets of sparse rows
    dense = JALClassifier(**calibrated).fit(train.toarray(), noisy[:150])
    sparse = JALClassifier(**calibrated).fit(train, noisy[:150])
    np.testing.assert_allclose(sparse.predict_proba(test), dense.predict_proba(test.toarray()), atol=1e-4)
    np.testing.assert_array_equal(sparse.predict(test.tocsc()), dense.predict(test.toarray()))
