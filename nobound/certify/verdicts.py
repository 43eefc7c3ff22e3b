"""The three verdicts of the certifier and what each carries.

* ``certified``: every problem was proved — by a bound on the whole box or by branch and
  bound with every leaf proved; ``certificate`` holds the split trees when requested.
* ``falsified``: ``counterexample`` is an input of the box whose float64 outputs violate
  every row of one problem (for robustness: some other class scores at least as high).
* ``unknown``: the timeout or the node limit was hit first (``reason`` says which).

``method`` names the stage that decided: "natural" (the clean input is misclassified),
"pgd", "ibp", "crown-ibp", "deeppoly", "alpha-crown", "bab" or "empty" (empty box).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nobound.certify.certificate import Certificate
from nobound.certify.problem import Counterexample

CERTIFIED, FALSIFIED, UNKNOWN = "certified", "falsified", "unknown"


@dataclass
class Verdict:
    status: str
    method: str
    seconds: float
    counterexample: Counterexample | None = None
    certificate: Certificate | None = None
    bounded: int = 0
    reason: str = ""
    lower_bound: float = -np.inf
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays, no certificate)."""
        return {"status": self.status, "method": self.method,
                "seconds": round(self.seconds, 4), "bounded": self.bounded,
                "reason": self.reason,
                "lower_bound": float(self.lower_bound) if np.isfinite(self.lower_bound)
                else None, **self.details}
