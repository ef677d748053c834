"""The verification service's use cases, one module per group; each use
case checks role and district, loads, applies domain.py, and saves with its
audit entry and outbox rows in one transaction (context.py). bootstrap.py
puts them together."""
