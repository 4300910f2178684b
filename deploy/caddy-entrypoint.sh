#!/bin/sh
# Entry point of the compose `proxy` service: run Caddy, and once its internal CA exists, export
# the CA's root certificate (public, not a secret) world-readable to CA_EXPORT. The app
# containers mount that volume and verify https://PUBLIC_HOST with it (AWS_S3_VERIFY) when they
# reach the bucket through this proxy; Caddy itself keeps the file readable by root only.
set -eu
root="${CADDY_ROOT_CERT:-/data/caddy/pki/authorities/local/root.crt}"
export_to="${CA_EXPORT:-/ca/root.crt}"

caddy run --config "${CADDYFILE:-/etc/caddy/Caddyfile}" --adapter caddyfile &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

if [ "${CADDY_TLS:-internal}" = internal ]; then
  while kill -0 "$pid" 2>/dev/null && [ ! -s "$root" ]; do sleep 0.5; done
  if [ -s "$root" ]; then
    cp "$root" "$export_to.tmp"
    chmod 0644 "$export_to.tmp"
    mv "$export_to.tmp" "$export_to"
  fi
fi

status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then  # woken by the trap: wait for Caddy to finish
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
