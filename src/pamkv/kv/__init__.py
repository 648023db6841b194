"""The tiered KV store PAM runs on: blocks over HBM/DDR/SSD tiers, importance, mapping, migration.

Main entry points: :class:`StoreSpec` (configuration), :class:`TieredKVStore` (the store), the
placement policies (:class:`PamPolicy`, :class:`LayeredPolicy`, :class:`StaticPolicy`,
:class:`RecentWindowPolicy`) and the migration plan/report types.
"""

from pamkv.kv.errors import CapacityError, InvariantError, KVStoreError, PlanError
from pamkv.kv.geometry import DeviceGeometry, build_geometry
from pamkv.kv.mapping import ActivityWindow, round_robin, sequential, unit_load, waterfill
from pamkv.kv.migration import LinkTraffic, MigrationPlan, MigrationReport, link_name
from pamkv.kv.policies import (
    LayeredPolicy,
    NewBlocks,
    PamPolicy,
    Placement,
    PlacementPolicy,
    PolicyView,
    RecentWindowPolicy,
    StaticPolicy,
    cascade,
    fill_top_down,
)
from pamkv.kv.spec import LayoutSpec, PayloadSpec, StoreSpec, TierSpec
from pamkv.kv.store import DevicePart, TieredKVStore, TokenLocation

__all__ = [
    "ActivityWindow", "CapacityError", "DeviceGeometry", "DevicePart", "InvariantError", "KVStoreError",
    "LayeredPolicy", "LayoutSpec", "LinkTraffic", "MigrationPlan", "MigrationReport", "NewBlocks",
    "PamPolicy", "PayloadSpec", "Placement", "PlacementPolicy", "PlanError", "PolicyView",
    "RecentWindowPolicy", "StaticPolicy", "StoreSpec", "TierSpec", "TieredKVStore", "TokenLocation",
    "build_geometry", "cascade", "fill_top_down", "link_name", "round_robin", "sequential", "unit_load",
    "waterfill",
]
