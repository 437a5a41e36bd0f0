#!/usr/bin/env bash
# lego "exec" DNS provider hook: publishes dns-01 TXT records in the mock DNS
# (pebble-challtestsrv) through its management API.
#
# lego calls it as:  lego-dns-exec.sh present|cleanup <fqdn> <value>
# (default mode, fqdn is "_acme-challenge.<domain>." with the trailing dot).
# CHALLTESTSRV_MGMT overrides the management API address.
set -euo pipefail

action=${1:?action}
fqdn=${2:?fqdn}
value=${3:-}
mgmt=${CHALLTESTSRV_MGMT:-http://127.0.0.1:8055}

case "$action" in
present)
	curl -fsS -X POST "$mgmt/set-txt" \
		-d "{\"host\":\"$fqdn\",\"value\":\"$value\"}" >/dev/null
	;;
cleanup)
	curl -fsS -X POST "$mgmt/clear-txt" -d "{\"host\":\"$fqdn\"}" >/dev/null
	;;
timeout)
	# lego's exec provider may ask for "timeout"; none configured here.
	;;
*)
	echo "lego-dns-exec.sh: unknown action $action" >&2
	exit 2
	;;
esac
