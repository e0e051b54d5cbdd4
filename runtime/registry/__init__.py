"""Model versions: which deployment answers, and the evidence that decides when a new version may.

deployments.py   name -> versions -> loaded deployments; aliases; ``pick()``
gates.py         the statistics that gate a rollout (Wilson bounds, Wald's SPRT, p95 ratio)
"""

from .deployments import PRODUCTION, Deployment, Loader, Registry, SignatureMismatch

__all__ = ["PRODUCTION", "Deployment", "Loader", "Registry", "SignatureMismatch"]
