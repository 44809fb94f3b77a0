"""Statistics on per-window losses: paired bootstrap intervals and tail summaries."""

from editproof.stats.bootstrap import BootstrapResult, paired_delta_bootstrap, weighted_mean
from editproof.stats.tails import TailSummary, delta_tail_summary, quantile_key

__all__ = [
    "BootstrapResult",
    "TailSummary",
    "delta_tail_summary",
    "paired_delta_bootstrap",
    "quantile_key",
    "weighted_mean",
]
