"""Guards: structural checks that compare a subject with its baseline.

invariants (finite weights, shapes, vocabulary, structure, tying), spectral (sigma_max per
matrix against the baseline's family spread), rmt (activation edge risk against the
Marchenko-Pastur edge) and variance (informational residual-variance proposals with an A/B
gate). ``chain`` runs them in that order.
"""

from editproof.guards.base import Guard, MeasureContext, Signature, contract_digest

__all__ = ["Guard", "MeasureContext", "Signature", "contract_digest"]
