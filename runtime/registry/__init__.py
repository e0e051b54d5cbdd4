"""Model versions: which deployment answers, and the evidence that decides when a new version may.

deployments.py   name -> versions -> loaded deployments; aliases; ``pick()``
gates.py         the statistics that gate a rollout (Wilson bounds, Wald's SPRT, p95 ratio)
"""

from .deployments import PRODUCTION, Deployment, Loader, Registry, SignatureMismatch
from .lifecycle import BelowFloor, Lifecycle, NotAllowed
from .rollout import Phase, Policy
from .state import LifecycleStore, RolloutActive, RolloutRecord

__all__ = [
    "PRODUCTION",
    "BelowFloor",
    "Deployment",
    "Lifecycle",
    "LifecycleStore",
    "Loader",
    "NotAllowed",
    "Phase",
    "Policy",
    "Registry",
    "RolloutActive",
    "RolloutRecord",
    "SignatureMismatch",
]
