"""The complete certifier: attack, bounds, branch and bound, verdicts, certificates, tables.

    certifier = Certifier(model, input_shape=(1, 28, 28), config=CertifierConfig(timeout=60))
    verdict = certifier.certify_sample(x, label, eps=0.1)   # robustness of one sample
    verdict = certifier.verify(problems)                    # any VerificationProblems
    verdict.status                                          # certified | falsified | unknown

See docs/certifier.md. The checker (:func:`check_certificate`) does not use this
package's branch and bound nor :mod:`nobound.bounds`.
"""

from importlib import import_module
from typing import Any

# Loaded on first use, so that importing the checker loads neither the branch and bound nor
# the relaxations (the checker's independence is tested).
_EXPORTS = {
    "BabConfig": "bab", "BabResult": "bab", "branch_and_bound": "bab",
    "Certificate": "certificate", "load_certificate": "certificate",
    "save_certificate": "certificate", "CheckReport": "checker",
    "check_certificate": "checker", "Certifier": "pipeline", "CertifierConfig": "pipeline",
    "Counterexample": "problem", "VerificationProblem": "problem",
    "float64_model": "problem", "robustness_problems": "problem", "Verdict": "verdicts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nobound.certify' has no attribute {name!r}")
    return getattr(import_module(f"nobound.certify.{_EXPORTS[name]}"), name)
