"""Verification's background loop (`kezek consume` runs it): the daily
retention job (kezek/retention.py)."""
from __future__ import annotations


def build_jobs(settings) -> list:
    from kezek.retention import daily_loop
    from services.verification.retention import build_retention

    return [daily_loop(build_retention(settings))]
