"""The benchmark gate: thresholds every row must meet, so a CI job or a device test can rely on it.

``Gate.parse("max-drop=0.5,max-class-drop=1.0,min-agreement=0.98")``. Drops are in accuracy
*points* against the FP32 reference; agreement is a fraction. A row that failed to run breaks any
gate.

The per-class rule matters, because overall accuracy hides quantization damage to rare classes
(Fear, Disgust); but on a small class one flipped image is several points (1 of 22 = 4.5 pt), so a
points threshold alone fails on noise. A class therefore breaks ``max-class-drop`` only when both

* its net loss exceeds the tolerance: 100 * (lost - gained) / images > ``max-class-drop``, and
* the loss is statistically significant: the exact one-sided McNemar test on the images of the
  class whose correctness changed (``lost``: reference right, model wrong; ``gained``: the
  reverse), p = P(X >= lost) with X ~ Binomial(lost + gained, 1/2), is below ``class-alpha``
  (default 0.05; ``class-alpha=1`` restores the points-only rule).

One image lost of 22 (p = 0.5) passes; six lost and none gained (p = 1/64) fails; on a 1000-image
class, 20 lost and none gained (2 pt, p ~ 1e-6) fails a 1-point tolerance.

Keys: ``max-drop`` (overall accuracy drop, pts), ``max-class-drop`` (per-class drop, pts, judged as
above), ``class-alpha`` (its significance level, in (0, 1]; only with ``max-class-drop``),
``max-mean-class-drop`` (mean-class accuracy drop, pts), ``min-agreement`` (top-1 agreement with the
reference, 0..1), ``min-accuracy`` (0..1), ``max-kl`` (mean KL(ref || model), nats),
``max-p99-ms`` (model-only p99 latency at every measured batch size, ms).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from edgefer.bench.metrics import mcnemar_drop_p
from edgefer.errors import EdgeferError

#: exit status of ``edgefer benchmark`` when the gate fails (2 is a user error).
GATE_EXIT_CODE = 3
#: a failed rule's severity is at least 1 + this: a clear margin over 1 for a consumer that compares
#: it with float slack (accuracy control allows 1e-9), even when the rule failed by a rounding error.
FAILED_SEVERITY_MARGIN = 1e-6
#: significance level of the per-class rule when ``class-alpha`` is not given.
DEFAULT_CLASS_ALPHA = 0.05

_KEYS = {
    "max-drop": "max_drop",
    "max-class-drop": "max_class_drop",
    "class-alpha": "class_alpha",
    "max-mean-class-drop": "max_mean_class_drop",
    "min-agreement": "min_agreement",
    "min-accuracy": "min_accuracy",
    "max-kl": "max_kl",
    "max-p99-ms": "max_p99_ms",
}

_ATTR_TO_KEY = {v: k for k, v in _KEYS.items()}
#: (Gate attribute, accuracy key, what it is, whether the value is a signed delta in points)
_ACCURACY_CHECKS = (
    ("max_drop", "delta_pts", "accuracy", True),
    ("max_mean_class_drop", "delta_mean_class_pts", "mean-class accuracy", True),
    ("min_agreement", "agreement", "agreement", False),
    ("min_accuracy", "accuracy", "accuracy", False),
    ("max_kl", "mean_kl", "mean KL", False),
)


class _RuleReading(NamedTuple):
    """One accuracy rule read against one row: what :meth:`Gate.check` words and
    :meth:`Gate.severity` grades (``amount`` of loss against ``allowed``), from the same numbers."""

    attr: str
    what: str
    is_drop: bool
    value: float | None  # None: the row lacks the number (no FP32 reference)
    limit: float
    amount: float
    allowed: float
    failed: bool


class _ClassReading(NamedTuple):
    """One class's change against the reference, read from its image counts."""

    name: str
    images: int
    lost: int
    gained: int
    drop: float  # net loss in points
    p: float  # one-sided McNemar p-value of the loss


@dataclass(frozen=True)
class Gate:
    """Thresholds; ``None`` means not checked. ``class_alpha`` defaults to 0.05 with ``max_class_drop``."""

    max_drop: float | None = None
    max_class_drop: float | None = None
    class_alpha: float | None = None
    max_mean_class_drop: float | None = None
    min_agreement: float | None = None
    min_accuracy: float | None = None
    max_kl: float | None = None
    max_p99_ms: float | None = None

    def __post_init__(self) -> None:
        if self.class_alpha is not None:
            if self.max_class_drop is None:
                raise EdgeferError("gate class-alpha only applies with max-class-drop (e.g. max-class-drop=1.0)")
            if not 0.0 < self.class_alpha <= 1.0:
                raise EdgeferError(
                    f"gate class-alpha is a significance level in (0, 1] (e.g. 0.05), got {self.class_alpha:g}"
                )
        elif self.max_class_drop is not None:
            object.__setattr__(self, "class_alpha", DEFAULT_CLASS_ALPHA)

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Parse ``key=value,key=value``; unknown keys and bad numbers are clear errors."""
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = key.strip().lower().replace("_", "-")
            if not sep or key not in _KEYS:
                raise EdgeferError(f"bad gate term {part!r}: expected key=value with key one of {', '.join(_KEYS)}")
            try:
                value = float(raw)
            except ValueError:
                raise EdgeferError(f"gate {key} needs a number, got {raw.strip()!r}") from None
            if math.isnan(value) or value < 0:
                raise EdgeferError(f"gate {key} must be a non-negative number, got {raw.strip()}")
            if key in ("min-agreement", "min-accuracy") and value > 1:
                raise EdgeferError(f"gate {key} is a fraction in [0, 1] (e.g. 0.98), got {value:g}")
            if _KEYS[key] in values:
                raise EdgeferError(f"gate {key} is given twice")
            values[_KEYS[key]] = value
        if not values:
            raise EdgeferError("empty gate: give at least one key=value, e.g. max-drop=0.5")
        return cls(**values)

    @classmethod
    def from_value(cls, value: str | dict[str, Any] | Gate | None) -> Gate | None:
        """A gate from a CLI string, a suite-file mapping or a Gate (None stays None)."""
        if value is None or isinstance(value, Gate):
            return value
        if isinstance(value, dict):
            return cls.parse(",".join(f"{k}={v}" for k, v in value.items()))
        return cls.parse(str(value))

    def to_dict(self) -> dict[str, float]:
        return {_ATTR_TO_KEY[f.name]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __str__(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.to_dict().items())

    def check(self, row: dict[str, Any]) -> list[str]:
        """Violations of one report row (as in ``BenchReport.rows``), each naming the number."""
        label = row.get("label", row.get("path", "?"))
        if row.get("status") != "ok":
            return [f"{label}: did not run ({row.get('status')})"]
        acc = row.get("accuracy") or {}
        out: list[str] = []
        for r in self._accuracy_rules(acc):
            gate_key = _ATTR_TO_KEY[r.attr]
            if r.value is None:
                out.append(f"{label}: {r.what} is unknown (no FP32 reference to compare with)")
            elif not r.failed:
                continue
            elif r.is_drop:
                out.append(f"{label}: {r.what} dropped {-r.value:.2f} pts > {gate_key} {r.limit:g}")
            elif r.attr.startswith("min_"):
                out.append(f"{label}: {r.what} {r.value:.4f} < {gate_key} {r.limit:g}")
            else:
                out.append(f"{label}: {r.what} {r.value:.4g} > {gate_key} {r.limit:g}")
        if self.max_class_drop is not None:
            out += self._class_failures(label, acc)
        if self.max_p99_ms is not None:
            for batch, lat in (row.get("latency") or {}).items():
                p99 = (lat.get("model") or {}).get("p99_ms")
                if p99 is not None and p99 > self.max_p99_ms:
                    out.append(f"{label}: batch {batch} p99 {p99:.2f} ms > max-p99-ms {self.max_p99_ms:g}")
        return out

    def _accuracy_rules(self, acc: dict[str, Any]) -> Iterator[_RuleReading]:
        """Each accuracy rule the gate sets, read against ``acc`` (a row's ``accuracy`` dict)."""
        for attr, key, what, is_drop in _ACCURACY_CHECKS:
            limit = getattr(self, attr)
            if limit is None:
                continue
            limit = float(limit)
            value = acc.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                yield _RuleReading(attr, what, is_drop, None, limit, math.inf, limit, True)
                continue
            value = float(value)
            if is_drop:
                amount, allowed, failed = -value, limit, -value > limit
            elif attr.startswith("min_"):
                amount, allowed, failed = 1.0 - value, 1.0 - limit, value < limit
            else:
                amount, allowed, failed = value, limit, value > limit
            yield _RuleReading(attr, what, is_drop, value, limit, amount, allowed, failed)

    @staticmethod
    def _class_readings(changes: list[dict[str, Any]]) -> Iterator[_ClassReading]:
        """Each non-empty class's net drop and McNemar p, recomputed from ``lost``/``gained`` (not
        from rounded points or a p-value the report carries, which could be stale)."""
        for ch in changes:
            images, lost, gained = int(ch["images"]), int(ch["lost"]), int(ch["gained"])
            if images:
                drop = 100.0 * (lost - gained) / images
                yield _ClassReading(str(ch["class"]), images, lost, gained, drop, mcnemar_drop_p(lost, gained))

    def _class_failures(self, label: str, acc: dict[str, Any]) -> list[str]:
        """The classes whose drop exceeds ``max-class-drop`` *and* is significant at ``class-alpha``."""
        changes = acc.get("per_class_changes")
        if changes is None:
            return [f"{label}: per-class change is unknown (no FP32 reference to compare with)"]
        limit, alpha = float(self.max_class_drop or 0.0), float(self.class_alpha or DEFAULT_CLASS_ALPHA)
        return [
            f"{label}: class {c.name} dropped {c.drop:.2f} pts ({c.gained - c.lost:+d} of {c.images} images: "
            f"lost {c.lost}, gained {c.gained}; one-sided McNemar p={c.p:.2g} < class-alpha {alpha:g}) "
            f"> max-class-drop {limit:g}"
            for c in self._class_readings(changes)
            if c.drop > limit and c.p < alpha
        ]

    def severity(self, acc: dict[str, Any]) -> float:
        """The largest normalised violation of the gate's accuracy rules: <= 1 exactly when they pass.

        ``acc`` is a row's ``accuracy`` dict (:func:`edgefer.bench.metrics.compare_to_reference`).
        Each rule gives a ratio of its number to its limit -- drop / ``max-drop``, the same for
        ``max-mean-class-drop``, (1 - agreement) / (1 - ``min-agreement``), (1 - accuracy) /
        (1 - ``min-accuracy``), KL / ``max-kl``, and per class drop / ``max-class-drop`` -- and
        the result is the largest. A class's drop is first discounted by its evidence, times
        min(1, ``class-alpha`` / p) with p its one-sided McNemar p-value, so noise on a small class
        does not dominate. A ratio is then pinned to the rule's own verdict, so rounding or a limit
        of 0 cannot make the two disagree: a rule that :meth:`check` fails is above 1, one it passes
        at most 1 (a class whose drop exceeds ``max-class-drop`` but is not significant at
        ``class-alpha`` counts 1 at most). 0 means no loss at all; latency
        (``max-p99-ms``) is not an accuracy rule and is not included. This is the number
        accuracy-controlled quantization optimises (:mod:`edgefer.quantize.accuracy_control`), so
        a model it accepts passes :meth:`check` with the same gate.
        """
        worst = 0.0
        for r in self._accuracy_rules(acc):
            if r.value is None:
                return math.inf  # unknown: check() reports it as a violation
            worst = max(worst, _pinned(r.amount, r.allowed, r.failed))
        if self.max_class_drop is not None:
            changes = acc.get("per_class_changes")
            if changes is None:
                return math.inf
            limit, alpha = float(self.max_class_drop), float(self.class_alpha or DEFAULT_CLASS_ALPHA)
            for c in self._class_readings(changes):
                # a drop is discounted by its evidence (alpha / p, at most 1), so one flipped image
                # of a small class does not dominate the number; it is pinned to the verdict anyway
                worst = max(worst, _pinned(c.drop * min(1.0, alpha / c.p), limit, c.drop > limit and c.p < alpha))
        return worst

    def evaluate(self, rows: list[dict[str, Any]]) -> list[str]:
        """All violations over all rows (empty list = the gate passes)."""
        return [v for row in rows for v in self.check(row)]


def _pinned(amount: float, allowed: float, failed: bool) -> float:
    """``amount / allowed``, kept above 1 when the rule ``failed`` and at most 1 when it passed."""
    if allowed > 0:
        ratio = max(amount, 0.0) / allowed
    else:  # a zero tolerance: any loss is a violation, graded by its size
        ratio = 0.0 if amount <= 0 else 1.0 + amount
    return max(ratio, 1.0 + FAILED_SEVERITY_MARGIN) if failed else min(ratio, 1.0)
