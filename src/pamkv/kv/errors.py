"""Exceptions of the KV store that are not a user's mistake.

A malformed store spec is a :class:`pamkv.errors.UserError` (raised by the config loader). These are
raised when a *caller* (a policy, the simulator, the HF cache) asks the store for something impossible;
the store is left unchanged when one is raised.
"""

from __future__ import annotations


class KVStoreError(RuntimeError):
    """An operation the tiered KV store refuses; the store is unchanged."""


class CapacityError(KVStoreError):
    """A tier (or the whole store) has no room for what was asked."""


class PlanError(KVStoreError):
    """A migration plan names an unknown block, a wrong source tier, a repeated block or a bad tier."""


class InvariantError(KVStoreError):
    """The store's bookkeeping is inconsistent (a bug): raised by ``TieredKVStore.check``."""
