#!/usr/bin/env bash
# mediaq-healthcheck HOST:PORT [PATH]: exit 0 when `GET PATH` (default /healthz) answers 200.
# Bash only (its /dev/tcp), so that the images carry no curl. Installed in both images as
# /usr/local/bin/mediaq-healthcheck; docker/compose.yaml's healthchecks call it.
set -u
addr=${1:?usage: mediaq-healthcheck HOST:PORT [PATH]}
path=${2:-/healthz}
host=${addr%:*}
port=${addr##*:}
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3
IFS= read -r -t 5 status <&3 || { echo "no answer from $addr$path" >&2; exit 1; }
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "unhealthy: $addr$path answered: ${status%$'\r'}" >&2; exit 1 ;;
esac
