#!/usr/bin/env bash
# Writes the secret files docker-compose.yml reads into DIR (default
# ./secrets): random keys and database passwords, empty optional tokens, and,
# when no certificate is there, a self-signed one for the two domains (to try
# the deployment; replace tls_cert.pem and tls_key.pem with real ones), and
# the services' signing keys (service-keys/, `kezek keys generate`).
# Never overwrites a file that exists: rotating a secret is a deliberate act
# (docs/operations.md, "Key rotation").
set -euo pipefail
dir=${1:-secrets}
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
random() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48; }
new() {  # name [value]
  local f="$dir/$1"
  if [ -e "$f" ]; then echo "kept    $f"; return; fi
  if [ $# -gt 1 ]; then printf '%s' "$2" >"$f"; else random >"$f"; fi
  echo "created $f"
}
for name in secret_key pseudonym_key postgres_password temporal_db_password \
            db_registration_password db_queue_password db_verification_password \
            db_notifications_password db_gateway_password; do
  new "$name"
done
# Data keys: personal data at rest (kezek/sealing.py), one per service that
# holds it, as kid:key (what `kezek keys data-key KID` prints). Never in a
# backup of the databases: keep them apart (docs/operations.md).
data_key() { printf '%s:%s' "$(date +%Y)a" "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; }
for service in registration queue verification notifications; do
  new "data_keys_$service" "$(data_key)"
done
new sms_token ""        # the SMS provider's token, if it wants one
new sms_receipt_secret  # the SMS provider signs delivery receipts with it: give it to the provider
if [ ! -e "$dir/tls_cert.pem" ]; then
  portal=${KEZEK_PORTAL_DOMAIN:-portal.localhost}
  staff=${KEZEK_STAFF_DOMAIN:-staff.localhost}
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$portal" \
    -addext "subjectAltName=DNS:$portal,DNS:$staff" \
    -keyout "$dir/tls_key.pem" -out "$dir/tls_cert.pem" 2>/dev/null
  echo "created $dir/tls_cert.pem (self-signed for $portal, $staff: replace it)"
fi
# Service identity: a key per service and jwks.json with every public key.
if [ ! -e "$dir/service-keys/jwks.json" ]; then
  kezek=${KEZEK:-$(command -v kezek || true)}
  if [ -n "$kezek" ]; then
    "$kezek" keys generate "$dir/service-keys" >/dev/null
  else   # from the image
    mkdir -p "$dir/service-keys"
    docker run --rm --user "$(id -u):$(id -g)" -v "$(cd "$dir/service-keys" && pwd):/keys" \
      "${KEZEK_IMAGE:-kezek:latest}" keys generate /keys >/dev/null
  fi
  echo "created $dir/service-keys (kezek keys generate)"
fi
# The containers run as different users (kezek 10001, postgres 999, temporal
# 1000, caddy root): the files are readable inside them, the folder is not
# open to other users of the host.
find "$dir" -type f -exec chmod 444 {} +
find "$dir" -type d -exec chmod 700 {} +
