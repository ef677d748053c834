"""The move from the old portal: `kezek import` (run.py), `kezek reconcile`
(reconcile.py), the export format (export.py), its checks (plan.py) and a
generator of sample exports (generate.py)."""
