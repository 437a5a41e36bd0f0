#!/usr/bin/env bash
# An acme-dns client as a lego "exec" hook, sending what the real clients
# send to POST {base}/update, for lego builds without an acme-dns provider
# (Debian's lego 4.9.1 answers "unrecognized DNS provider: acme-dns"):
#   ACMEDNS_STYLE=lego     lego's acme-dns provider: Content-Type
#                          application/json, {"subdomain":...,"txt":...}
#   ACMEDNS_STYLE=acme.sh  acme.sh's dns_acmedns: curl --data with no
#                          Content-Type of its own (so curl's form type),
#                          {"subdomain":"...", "txt": "..."}; it checks
#                          only that the answer holds the value
#
# lego calls it as:  acme-dns-client.sh present|cleanup <fqdn> <value>
# Environment: ACMEDNS_BASE (the API base URL), ACMEDNS_USER, ACMEDNS_KEY,
# ACMEDNS_SUBDOMAIN (from /register), ACMEDNS_CA (PEM to trust for HTTPS),
# ACMEDNS_STYLE (default lego).
set -euo pipefail

action=${1:?action}
value=${3:-}

case "$action" in
present)
	case "${ACMEDNS_STYLE:-lego}" in
	lego)
		curl -fsS --cacert "$ACMEDNS_CA" -X POST "$ACMEDNS_BASE/update" \
			-H "X-Api-User: $ACMEDNS_USER" -H "X-Api-Key: $ACMEDNS_KEY" \
			-H 'Content-Type: application/json' \
			-d "{\"subdomain\":\"$ACMEDNS_SUBDOMAIN\",\"txt\":\"$value\"}" >/dev/null
		;;
	acme.sh)
		response=$(curl -sS --cacert "$ACMEDNS_CA" -X POST \
			-H "X-Api-User: $ACMEDNS_USER" -H "X-Api-Key: $ACMEDNS_KEY" -H "" -H "" -H "" \
			--data "{\"subdomain\":\"$ACMEDNS_SUBDOMAIN\", \"txt\": \"$value\"}" \
			"$ACMEDNS_BASE/update")
		grep -q "\"$value\"" <<<"$response" || {
			echo "acme-dns-client.sh: invalid response of acme-dns: $response" >&2
			exit 1
		}
		;;
	*)
		echo "acme-dns-client.sh: unknown ACMEDNS_STYLE ${ACMEDNS_STYLE}" >&2
		exit 2
		;;
	esac
	;;
cleanup | timeout)
	# acme-dns has no delete: values expire on the server.
	;;
*)
	echo "acme-dns-client.sh: unknown action $action" >&2
	exit 2
	;;
esac
