"""BentoML services: thin HTTP layers over the runtime pipeline (see services/http.py)."""
