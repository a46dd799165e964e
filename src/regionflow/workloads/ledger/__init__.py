"""The ledger workload: money transfers on PostgreSQL streaming replication (DESIGN §9).

secret.py (the database secret the regions re-read), schema.py (tables, roles, setup on the primary),
service.py (transfers and reads, one region), steps.py (database_failover, rotate_secret,
database_switchover), missing.py (the missing-transaction report).
"""
