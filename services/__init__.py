"""Ballast's services: declare one with :func:`ballast_service` and serve it with ``bentoml serve``.

services/declaration.py   what a service says about itself, and what derives from it
services/endpoints.py     its prediction routes; services/admin.py the admin routes
services/http/            the front door: routing, codecs, the error envelope, door control
services/bento.py         the one place that knows BentoML
services/fraud.py, digits.py, tensor.py   the built-in services, a declaration each
"""

from runtime import BusinessRule

from .bento import ballast_service
from .declaration import Compliance, Stage, Tensor

__all__ = ["BusinessRule", "Compliance", "Stage", "Tensor", "ballast_service"]
