#!/bin/sh
# Temporal's schema on PostgreSQL, as its own role (run by the temporal-schema
# one-shot service in the admin-tools image, before the server starts, on the
# first deployment and after every Temporal upgrade). Idempotent: set-up is a
# no-op on a set-up database and update-schema applies only what is missing.
set -eu
: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD_FILE:?}"
SQL_PASSWORD=$(cat "$SQL_PASSWORD_FILE")
schemas=${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}
tool() {
  temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "${SQL_PORT:-5432}" \
    -u "$SQL_USER" --pw "$SQL_PASSWORD" "$@"
}
tool --db temporal setup-schema -v 0.0
tool --db temporal update-schema -d "$schemas/temporal/versioned"
tool --db temporal_visibility setup-schema -v 0.0
tool --db temporal_visibility update-schema -d "$schemas/visibility/versioned"
echo "temporal schema: up to date"
