#!/bin/sh
# Kezek's Temporal namespace, created once with its retention (how long closed
# referral workflows stay readable). Run by the temporal-namespace one-shot
# service; the `temporal` CLI reads TEMPORAL_ADDRESS.
set -eu
: "${NAMESPACE:?}"
if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE: exists"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "${RETENTION:-30d}"
  echo "namespace $NAMESPACE: created"
fi
