"""The thresholds of the model-regression rules (``RuleOptions(regressions=...)``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RegressionOptions"]


@dataclass(frozen=True)
class RegressionOptions:
    """Thresholds of the regression rules (``RuleOptions(regressions=...)``)."""

    quality_drop: float = 0.1
    quality_min_scores: int = 20
    outcome_drop: float = 0.1
    outcome_min: int = 20
    drift_threshold: float = 0.2
    drift_for_s: int = 900
    anomaly_threshold: float = 4.0
    anomaly_for_s: int = 600
    regression_for_s: int = 900
    canary_window_s: int = 3600
    zscore_threshold: float = 3.0
    zscore_for_s: int = 600
    #: the smallest standard deviation a z-score divides by (error ratio, p95 seconds)
    error_ratio_stddev_floor: float = 0.01
    latency_stddev_floor_s: float = 0.1
    #: and the smallest error ratio / p95 an adaptive alert fires at
    error_ratio_min: float = 0.02
    latency_min_s: float = 1.0
