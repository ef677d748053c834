#!/bin/sh
# Runs once, when the PostgreSQL container starts on an empty data folder
# (docker-entrypoint-initdb.d), as the superuser. Each Kezek service gets its
# own role owning its own database and nothing else; Temporal gets its role
# and its two databases. Passwords come from the secret files.
set -eu
secrets=${SECRETS_DIR:-/run/secrets}

sql() { psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" "$@"; }

role() {  # role password-file database...
  name=$1; file=$2; shift 2
  [ -s "$file" ] || { echo "init-databases: $file is missing or empty" >&2; exit 1; }
  sql -q -v role="$name" -v pw="$(cat "$file")" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
SQL
  for db in "$@"; do
    sql -q -c "CREATE DATABASE \"$db\" OWNER \"$name\"" -c "REVOKE ALL ON DATABASE \"$db\" FROM PUBLIC"
  done
}

for service in registration queue verification notifications gateway; do
  role "kezek_$service" "$secrets/db_${service}_password" "kezek_$service"
done
role temporal "$secrets/temporal_db_password" temporal temporal_visibility
echo "init-databases: roles and databases created"
