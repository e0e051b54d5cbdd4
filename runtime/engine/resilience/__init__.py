"""Resilience parts: circuit breakers."""

from .breaker import CircuitBreaker

__all__ = ["CircuitBreaker"]
