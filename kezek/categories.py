"""The categories of an application (DOMAIN.md sections 2-4), named once.

A category decides the child's rank and whether a caseworker must confirm
the privilege before a referral can be used. Which categories run, their
ranks and checks are the queue's policy (data an administrator changes);
these are the codes the system itself knows and the policy's defaults.
"""
from __future__ import annotations

GENERAL = "general"              # the general queue; a rejected privilege returns the child here
PRIVILEGED = "privileged"        # a privilege the system can check itself
EXTRAORDINARY = "extraordinary"  # the extraordinary right: confirmed at the Department of Education
VOUCHER = "voucher"              # the voucher programme: a commission decides

# Every category a form may name, in the order the portal offers them.
KNOWN = (GENERAL, PRIVILEGED, EXTRAORDINARY, VOUCHER)
# Offered wherever the queue runs; the voucher programme only where the
# policy has it.
ALWAYS_OFFERED = (GENERAL, PRIVILEGED, EXTRAORDINARY)

# The queue's default policy: (code, rank, needs_confirmation), lower ranks
# first, the extraordinary right first and the general queue last.
DEFAULT_RANKING: tuple[tuple[str, int, bool], ...] = (
    (EXTRAORDINARY, 0, True),
    (PRIVILEGED, 10, False),
    (GENERAL, 100, False),
)
