#!/bin/sh
# One database per service, plus Temporal's own.
set -e
for db in kezek_registration kezek_queue kezek_verification kezek_notifications kezek_gateway; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE $db"
done
