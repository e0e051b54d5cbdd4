"""Resilience parts: circuit breakers."""

from .breaker import BreakerState, CircuitBreaker

__all__ = ["BreakerState", "CircuitBreaker"]
