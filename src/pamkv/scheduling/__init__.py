"""Scheduling: the request scheduler and the inter-device online KV scheduler (PAPER.md §6.3)."""

from pamkv.scheduling.online_kv import (
    KVSchedule,
    ScheduleError,
    balanced_targets,
    pam_targets,
    schedule_kv,
    tier_scores,
)

__all__ = ["KVSchedule", "ScheduleError", "balanced_targets", "pam_targets", "schedule_kv", "tier_scores"]
