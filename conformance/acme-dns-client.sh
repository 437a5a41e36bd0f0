#!/usr/bin/env bash
# An acme-dns client as a lego "exec" hook: what lego's acme-dns provider
# does (POST {base}/update with X-Api-User / X-Api-Key and
# {"subdomain", "txt"}), for lego builds without that provider (Debian's
# lego 4.9.1 answers "unrecognized DNS provider: acme-dns").
#
# lego calls it as:  acme-dns-client.sh present|cleanup <fqdn> <value>
# Environment: ACMEDNS_BASE (the API base URL), ACMEDNS_USER, ACMEDNS_KEY,
# ACMEDNS_SUBDOMAIN (from /register), ACMEDNS_CA (PEM to trust for HTTPS).
set -euo pipefail

action=${1:?action}
value=${3:-}

case "$action" in
present)
	curl -fsS --cacert "$ACMEDNS_CA" -X POST "$ACMEDNS_BASE/update" \
		-H "X-Api-User: $ACMEDNS_USER" -H "X-Api-Key: $ACMEDNS_KEY" \
		-H 'content-type: application/json' \
		-d "{\"subdomain\":\"$ACMEDNS_SUBDOMAIN\",\"txt\":\"$value\"}" >/dev/null
	;;
cleanup | timeout)
	# acme-dns has no delete: values expire on the server.
	;;
*)
	echo "acme-dns-client.sh: unknown action $action" >&2
	exit 2
	;;
esac
