"""Launchers for the real servers Kezek runs on: Temporal, Kafka, PostgreSQL.

`make run`, the test fixtures and the benchmarks all start them through here,
so there is one way to start each, with nothing downloaded at run time.
"""
