"""``JALClassifier``: a scikit-learn classifier trained with a robust loss on the jal-plugins engine."""

from __future__ import annotations

import copy
import logging

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data


def _as_arrays(X, y):
    """A torch ``Dataset`` is materialised (its own labels are used only when ``y`` is None)."""
    import torch

    if isinstance(X, torch.utils.data.Dataset):
        items = [X[i] for i in range(len(X))]
        inputs = np.stack([np.asarray(item[0]) for item in items])
        if y is None:
            y = np.asarray([int(item[1]) for item in items])
        return inputs, y
    return X, y


LOG = logging.getLogger("jal_plugins.estimator")


def _show(log: logging.Logger) -> None:
    """``verbose``: the estimator's epochs on stderr, unless the application has configured logging."""
    if not log.handlers and not logging.getLogger().handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)


# what a selection of ``a`` and a calibration leave behind (cleared by a new fit)
CHOSEN = ("best_params_", "a_", "beta_", "weight_decay_", "candidates_", "selection_scores_", "noise_rate_", "temperature_")


class JALClassifier(ClassifierMixin, BaseEstimator):
    """A torch network trained with a robust loss (default JAL-CE), on the GPU when there is one.

    ``module`` is a registered network name or an ``nn.Module`` class taking
    ``(num_classes, in_channels, **module_params)``; ``"auto"`` picks ``mlp`` for 2-D input and a
    CNN for image arrays (N, C, H, W uint8 or float). ``preset`` fills loss parameters and the
    regularisation (``weight_decay``/``l1`` left at None) from ``registry.toml``. Tabular features
    are standardised with the statistics of the first fit. SciPy sparse ``X`` (a ``TfidfVectorizer``'s
    output in a pipeline) stays sparse: each batch is densified on the device. ``classes`` fixes
    the label set (and so the ``predict_proba`` columns) when a fit may not see every class.
    ``method`` is a registered training method (``erm``, ``co-teaching``, ``cleanlab-prune``, ...)
    with ``method_params``; it decides how the noisy labels are used, the loss how they are scored.

    ``tune=True`` (with ``erm``): every loss chooses its parameters and regularisation for the data
    from its search space (``registry.toml`` ``[search.spaces]``, the same number of candidates for
    every loss), unless ``loss_params`` gives one of them: the candidates train as one stack on each
    stratified half of the labels and the best at predicting the other half wins (in a space ordered
    by regularisation, the most regularised within a standard error of it), then trains on all
    the data (``jal_plugins.selection``; ``best_params_``, ``candidates_``, ``selection_scores_``,
    ``weight_decay_``; for JAL also ``a_``, ``beta_``). ``calibrate=True`` fits one temperature for
    ``predict_proba`` on those held-out predictions, through the noise level estimated there
    (``temperature_``, ``noise_rate_``), so the probabilities are calibrated for the clean labels;
    without a search it costs a second fit.
    ``partial_fit`` trains with fixed parameters (the loss's defaults unless given) and no calibration.
    30 epochs by default: on noisy digits, JAL-CE's chosen settings score as well as with 60, in half
    the time.
    """

    def __init__(
        self,
        loss="jal-ce",
        loss_params=None,
        preset=None,
        method="erm",
        method_params=None,
        module="auto",
        module_params=None,
        epochs=30,
        batch_size=64,
        lr=0.05,
        momentum=0.9,
        weight_decay=None,
        l1=None,
        device="auto",
        random_state=None,
        warm_start=False,
        verbose=0,
        classes=None,
        calibrate=True,
        tune=True,
    ):
        self.loss = loss
        self.loss_params = loss_params
        self.preset = preset
        self.method = method
        self.method_params = method_params
        self.module = module
        self.module_params = module_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.l1 = l1
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.classes = classes
        self.calibrate = calibrate
        self.tune = tune

    # ----------------------------------------------------------------------------------------
    def _validate(self, X, y=None, reset=True):
        X, y = _as_arrays(X, y)
        images = isinstance(X, np.ndarray) and X.ndim == 4
        if images:
            if reset:
                self.n_features_in_ = int(np.prod(X.shape[1:]))
            elif int(np.prod(X.shape[1:])) != self.n_features_in_:
                raise ValueError(f"X has {int(np.prod(X.shape[1:]))} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input")  # fmt: skip
            if y is not None:
                y = np.asarray(y)
            if not np.isfinite(X).all():
                raise ValueError("Input X contains NaN or infinity.")
            return X, y
        if y is None:
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], accept_sparse="csr"), None
        return validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32], accept_sparse="csr")

    def _encode(self, y, classes=None):
        check_classification_targets(y)
        if not hasattr(self, "classes_"):
            labels = classes if classes is not None else self.classes
            self.classes_ = np.unique(y) if labels is None else np.unique(np.asarray(labels))
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes; got 1 class: {self.classes_}")
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y contains labels {unseen.tolist()} not in classes {self.classes_.tolist()}")
        return np.searchsorted(self.classes_, y)

    def _build(self, X, y=None, selects: bool = True):
        """The network(s) of this fit as one ``engine.Runs``: a search and calibration
        (``selection.Selections``), or the method's learner."""
        from jal_plugins import create_method
        from jal_plugins.checks import boolean, device
        from jal_plugins.job import method_context
        from jal_plugins.methods.base import Learner
        from jal_plugins.selection import Selections, folds, parse

        calibrate = boolean("calibrate", self.calibrate) and selects
        tune = boolean("tune", self.tune) and selects
        self.device_ = device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        loss_params, selection = parse(self.loss, dict(self.loss_params or {}), self.method, self.preset,
                                       default=tune, num_classes=len(self.classes_))  # fmt: skip
        if selection is not None and not selects:
            raise ValueError("partial_fit trains one epoch at a time and cannot search: give the loss's parameters "
                             "(loss_params={'a': 30})")
        base = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum}
        explicit = {k: v for k, v in (("weight_decay", self.weight_decay), ("l1", self.l1)) if v is not None}
        context = method_context(
            loss=self.loss, num_classes=len(self.classes_), input_shape=X.shape[1:], device=self.device_, seed=seed,
            model=self.module, model_params=self.module_params, loss_params=loss_params, preset=self.preset,
            base_config=base, config=explicit,
        )  # fmt: skip
        method_params = self.method_params or {}
        if selection is not None or calibrate:
            grid = selection.candidates(loss_params, explicit) if selection else [{"loss_params": {}, "config": {}}]
            k = selection.folds if selection else folds()
            ties = [selection.ties] if selection else None
            self.trainer_ = Selections([context], [grid], self.method, method_params, calibrate=calibrate, k=k, ties=ties)
        else:
            self.trainer_ = Learner(create_method(self.method, context, **method_params))
        self.module_ = self.trainer_.module
        self.history_ = []

    def _fitted(self) -> None:
        """Fitted attributes from the training: the network, and what a selection chose."""
        info = self.trainer_.info(0)
        self.module_ = self.trainer_.module
        self.temperature_ = float(info.get("temperature", getattr(self, "temperature_", 1.0)))
        if info.get("chosen") is not None and len(info["candidates"]) > 1:
            params = {**(self.loss_params or {}), **info["chosen"]["loss_params"]}
            self.best_params_ = {**params, **info["chosen"]["config"]}
            if "a" in params:
                self.a_ = params["a"]
                self.beta_ = params.get("beta")
            self.weight_decay_ = info["chosen"]["config"].get("weight_decay", self.weight_decay)
            self.candidates_ = info["candidates"]
            self.selection_scores_ = info["scores"]
            self.noise_rate_ = info.get("noise_rate")

    def _data(self, X, y=None, sample_weight=None):
        from scipy import sparse

        from jal_plugins.datasets import channel_stats
        from jal_plugins.engine import DeviceData
        from jal_plugins.sparse import SparseRows, column_stats

        if sparse.issparse(X):  # standardised as dense rows would be, a batch at a time
            if not hasattr(self, "feature_stats_"):
                self.feature_stats_ = column_stats(X)
            X, mean, std = SparseRows(X, self.device_, *self.feature_stats_), None, None
        elif X.dtype == np.uint8 and X.ndim == 4:
            if not hasattr(self, "pixel_stats_"):
                self.pixel_stats_ = channel_stats(X)
            mean, std = self.pixel_stats_
        else:
            X, mean, std = X.astype(np.float32, copy=False), None, None
            if X.ndim == 2:  # standardise tabular features with the first fit's statistics
                if not hasattr(self, "feature_stats_"):
                    spread = X.std(0)
                    self.feature_stats_ = (X.mean(0), np.where(spread > 0, spread, 1).astype(np.float32))
                X = (X - self.feature_stats_[0]) / self.feature_stats_[1]
        labels = np.zeros(len(X), dtype=np.int64) if y is None else y
        return DeviceData(X, labels, self.device_, mean, std, sample_weight=sample_weight)

    def _weights(self, sample_weight, X):
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, dtype=np.float32, ensure_non_negative=True)
        if sw.sum() <= 0:
            raise ValueError("sample_weight sums to zero: nothing to train on")
        return sw

    def _train(self, X, y, sample_weight, epochs):
        from jal_plugins.loop import raise_divergence, train

        def record(runs, stats):
            self.history_.append(stats[0]["train_loss"])
            if self.verbose:
                LOG.info("epoch %d: loss %.4f acc %.3f", runs.epoch, stats[0]["train_loss"], stats[0]["train_accuracy"])

        if self.verbose:
            _show(LOG)
        data = self._data(X, y, self._weights(sample_weight, X))
        train(self.trainer_, data, until=self.trainer_.epoch + epochs, callbacks=(raise_divergence(), record))
        self._fitted()
        return self

    # ----------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train for ``epochs`` epochs (continuing the fitted network when ``warm_start``)."""
        X, y = self._validate(X, y, reset=not (self.warm_start and hasattr(self, "module_")))
        if not (self.warm_start and hasattr(self, "module_")):
            for attr in ("classes_", "pixel_stats_", "feature_stats_", *CHOSEN):
                self.__dict__.pop(attr, None)
            y = self._encode(y)
            self._build(X, y)
            return self._train(X, y, sample_weight, self.trainer_.epochs)  # a method may add epochs
        y = self._encode(y)
        return self._train(X, y, sample_weight, self.epochs)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch on ``X, y``; ``classes`` (or the ``classes`` parameter) is needed on the first call."""
        first = not hasattr(self, "module_")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None and self.classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            y = self._encode(y, classes)
            self._build(X, y, selects=False)
        else:
            y = self._encode(y)
        return self._train(X, y, sample_weight, 1)

    def _logits(self, X):
        check_is_fitted(self)
        X, _ = self._validate(X, reset=False)
        return self.trainer_.logits(self._data(X))[0]

    def predict_proba(self, X):
        """Class probabilities (float64, rows sum to 1) in ``classes_`` order."""
        import torch

        logits = self._logits(X).double()  # checks fitted-ness before temperature_ is read
        return torch.softmax(logits / self.temperature_, 1).cpu().numpy()

    def predict(self, X):
        index = self._logits(X).argmax(1).cpu().numpy()  # checks fitted-ness before classes_ is read
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        from jal_plugins.checks import device

        try:
            tags.non_deterministic = device(self.device).type == "cuda"
        except ValueError:
            pass
        return tags

    def __getstate__(self):
        # Pickle on the CPU so a CUDA-trained estimator unpickles where there is no GPU.
        state = self.__dict__.copy()
        if "trainer_" in state and self.device_.type != "cpu":
            import torch

            runs = copy.deepcopy(state["trainer_"]).to("cpu")
            state.update(trainer_=runs, module_=runs.module, device_=torch.device("cpu"))
        return state
