"""`kezek scenario FILE`: the queue's rules on a timeline (SCENARIOS.md).

model.py reads and checks the file; world.py is the in-memory queue service
(the register of places, the queue, the queue-side activities); runner.py
drives the real allocation and the real ReferralWorkflow on a time-skipping
Temporal server; cli.py prints JSON Lines.
"""
