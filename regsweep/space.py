"""The search space: declared once, validated on creation, sampled by Optuna.

Example:
    >>> space = SearchSpace(regularizers=("none", "l2"), depth=(1, 3), width=32)
    >>> space.width
    (32, 32)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regsweep.errors import SearchSpaceError

if TYPE_CHECKING:
    import optuna

REGULARIZERS = ("none", "l1", "l2", "l1_l2")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "sigmoid")
# The Optuna parameter names of the core dimensions, in the order they are suggested.
CORE_PARAMS = ("regularizer", "lam", "dropout", "depth", "width", "patience")


def _as_range(value: Any) -> tuple[Any, Any]:
    """Turn a scalar into the fixed range ``(value, value)``; keep pairs as they are."""
    if isinstance(value, (list, tuple)):
        return tuple(value)  # type: ignore[return-value]
    return (value, value)


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_range(
    name: str, value: tuple[Any, ...], *, kind: type, low: float, high: float | None,
    low_open: bool = False, high_open: bool = False, example: str,
) -> None:
    """Check that ``value`` is ``(lo, hi)`` of ``kind`` with bounds inside [low, high]."""
    lower = f"{'(' if low_open else '['}{low:g}"
    upper = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    allowed = f"a pair (low, high) of {kind.__name__}s in {lower}, {upper} with low <= high"
    if len(value) != 2 or not all(_is_number(v, kind) for v in value):
        raise SearchSpaceError(f"SearchSpace.{name}: got {value!r}; allowed: {allowed} or one {kind.__name__}, e.g. {name}={example}")
    lo, hi = value
    bad_low = lo <= low if low_open else lo < low
    bad_high = high is not None and (hi >= high if high_open else hi > high)
    if bad_low or bad_high or lo > hi:
        raise SearchSpaceError(f"SearchSpace.{name}: got {value!r}; allowed: {allowed}, e.g. {name}={example}")


@dataclass(frozen=True)
class SearchSpace:
    """What a sweep may try. Pass one value to fix a dimension, a pair to search it.

    Args:
        regularizers: kernel penalties to try, from ``none``, ``l1``, ``l2``, ``l1_l2``
            (``l1_l2`` applies the same λ to both terms).
        lam: penalty strength λ, sampled on a log scale; not sampled for ``none``.
        dropout: dropout rate after each hidden layer, in [0, 1).
        depth: number of hidden Dense layers.
        width: units per hidden layer, sampled on a log scale.
        patience: early-stopping patience in epochs.
        max_epochs: epochs at most per trial.
        batch_size: minibatch size.
        optimizer: ``adam``, ``rmsprop`` or ``sgd``.
        learning_rate: searched (log scale, parameter ``learning_rate``) when low < high.
        batch_norm: ``(False,)`` off, ``(True,)`` on, ``(False, True)`` searched.
        clipnorm: gradient-norm clipping per step; ``None`` off, searched when low < high.
        augmentation: strength of random rotation/shift/zoom/shear for image data,
            ``None`` off, searched when low < high.
        activation: hidden-layer activation.
    """

    regularizers: tuple[str, ...] = REGULARIZERS
    lam: tuple[float, float] = (1e-6, 1e-1)
    dropout: tuple[float, float] = (0.0, 0.5)
    depth: tuple[int, int] = (1, 4)
    width: tuple[int, int] = (4, 128)
    patience: tuple[int, int] = (2, 10)
    max_epochs: int = 50
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: tuple[float, float] = (1e-3, 1e-3)
    batch_norm: tuple[bool, ...] = (False,)
    clipnorm: tuple[float, float] | None = None
    augmentation: tuple[float, float] | None = None
    activation: str = "relu"

    def __post_init__(self) -> None:
        setter = object.__setattr__
        regs = self.regularizers
        setter(self, "regularizers", (regs,) if isinstance(regs, str) else tuple(regs))
        for name in ("lam", "dropout", "depth", "width", "patience", "learning_rate"):
            setter(self, name, _as_range(getattr(self, name)))
        for name in ("clipnorm", "augmentation"):
            if getattr(self, name) is not None:
                setter(self, name, _as_range(getattr(self, name)))
        norm = self.batch_norm
        setter(self, "batch_norm", (norm,) if isinstance(norm, bool) else tuple(norm))
        self._validate()

    def _validate(self) -> None:
        if not self.regularizers or any(r not in REGULARIZERS for r in self.regularizers):
            raise SearchSpaceError(
                f"SearchSpace.regularizers: got {self.regularizers!r}; allowed: a non-empty "
                f"subset of {REGULARIZERS}"
            )
        if len(set(self.regularizers)) != len(self.regularizers):
            raise SearchSpaceError(f"SearchSpace.regularizers: got {self.regularizers!r}; allowed: no repeated kinds")
        _check_range("lam", self.lam, kind=float, low=0, high=None, low_open=True, example="(1e-6, 1e-1)")
        _check_range("dropout", self.dropout, kind=float, low=0, high=1, high_open=True, example="(0.0, 0.5)")
        _check_range("depth", self.depth, kind=int, low=1, high=64, example="(1, 4)")
        _check_range("width", self.width, kind=int, low=1, high=65536, example="(4, 128)")
        _check_range("patience", self.patience, kind=int, low=0, high=None, example="(2, 10)")
        _check_range("learning_rate", self.learning_rate, kind=float, low=0, high=None, low_open=True, example="(1e-4, 1e-2)")
        if self.clipnorm is not None:
            _check_range("clipnorm", self.clipnorm, kind=float, low=0, high=None, low_open=True, example="(0.1, 10.0)")
        if self.augmentation is not None:
            _check_range("augmentation", self.augmentation, kind=float, low=0, high=1, example="(0.0, 0.3)")
        for name in ("max_epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_number(value, int) or value < 1:
                raise SearchSpaceError(f"SearchSpace.{name}: got {value!r}; allowed: an int >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise SearchSpaceError(f"SearchSpace.optimizer: got {self.optimizer!r}; allowed: one of {OPTIMIZERS}")
        if self.activation not in ACTIVATIONS:
            raise SearchSpaceError(f"SearchSpace.activation: got {self.activation!r}; allowed: one of {ACTIVATIONS}")
        if not self.batch_norm or any(not isinstance(b, bool) for b in self.batch_norm) or len(set(self.batch_norm)) != len(self.batch_norm):
            raise SearchSpaceError(
                f"SearchSpace.batch_norm: got {self.batch_norm!r}; allowed: (False,), (True,) or (False, True)"
            )

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` turns it back into an equal space."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Rebuild a space from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SearchSpaceError(f"SearchSpace: unknown field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    # -- which optional dimensions are searched ------------------------------------------
    @property
    def searched_options(self) -> tuple[str, ...]:
        """Names of the optional parameters (beyond the core six) that this space samples."""
        names = []
        if self.learning_rate[0] < self.learning_rate[1]:
            names.append("learning_rate")
        if len(self.batch_norm) > 1:
            names.append("batch_norm")
        if self.clipnorm is not None and self.clipnorm[0] < self.clipnorm[1]:
            names.append("clipnorm")
        if self.augmentation is not None and self.augmentation[0] < self.augmentation[1]:
            names.append("augmentation")
        return tuple(names)


@dataclass(frozen=True)
class TrialConfig:
    """One sampled point of a :class:`SearchSpace`: everything needed to build and train."""

    regularizer: str
    lam: float
    dropout: float
    depth: int
    width: int
    patience: int
    max_epochs: int = 50
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_norm: bool = False
    clipnorm: float | None = None
    augmentation: float = 0.0
    activation: str = "relu"
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict[str, Any], space: SearchSpace) -> TrialConfig:
        """Rebuild the config of a stored trial from its Optuna params and the space."""
        return cls(
            regularizer=params["regularizer"],
            lam=float(params.get("lam", 0.0)),
            dropout=float(params["dropout"]),
            depth=int(params["depth"]),
            width=int(params["width"]),
            patience=int(params["patience"]),
            max_epochs=space.max_epochs,
            batch_size=space.batch_size,
            optimizer=space.optimizer,
            learning_rate=float(params.get("learning_rate", space.learning_rate[0])),
            batch_norm=bool(params.get("batch_norm", space.batch_norm[0])),
            clipnorm=params.get("clipnorm", None if space.clipnorm is None else space.clipnorm[0]),
            augmentation=float(params.get("augmentation", 0.0 if space.augmentation is None else space.augmentation[0])),
            activation=space.activation,
        )


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace) -> TrialConfig:
    """Sample one :class:`TrialConfig` from ``space`` through ``trial``.

    The core parameters are always named ``regularizer``, ``lam`` (only when the
    regularizer is not ``none``), ``dropout``, ``depth``, ``width``, ``patience``; the
    optional ones appear only when the space searches them.
    """
    regularizer = trial.suggest_categorical("regularizer", list(space.regularizers))
    if regularizer != "none":
        trial.suggest_float("lam", *space.lam, log=True)
    trial.suggest_float("dropout", *space.dropout)
    trial.suggest_int("depth", *space.depth)
    trial.suggest_int("width", *space.width, log=True)
    trial.suggest_int("patience", *space.patience)
    if "learning_rate" in space.searched_options:
        trial.suggest_float("learning_rate", *space.learning_rate, log=True)
    if "batch_norm" in space.searched_options:
        trial.suggest_categorical("batch_norm", list(space.batch_norm))
    if "clipnorm" in space.searched_options:
        assert space.clipnorm is not None
        trial.suggest_float("clipnorm", *space.clipnorm, log=True)
    if "augmentation" in space.searched_options:
        assert space.augmentation is not None
        trial.suggest_float("augmentation", *space.augmentation)
    return TrialConfig.from_params(trial.params, space)
