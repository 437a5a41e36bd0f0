#!/usr/bin/env bash
# lego "exec" DNS provider hook for the DNS lab: publishes dns-01 TXT records
# in BIND with a TSIG-signed RFC 2136 update (nsupdate), as a client with
# its own DNS key would. Needs LAB_BIND, LAB_TSIG_NAME, LAB_TSIG_SECRET and
# NSUPDATE_ZONE (the zone the names are in).
#
# lego calls it as:  lego-nsupdate-exec.sh present|cleanup <fqdn> <value>
set -euo pipefail

action=${1:?action}
fqdn=${2:?fqdn}
value=${3:-}

update() {
	printf 'server %s 53\nzone %s\nkey hmac-sha256:%s %s\n%s\nsend\n' \
		"$LAB_BIND" "${NSUPDATE_ZONE:?}" "$LAB_TSIG_NAME" "$LAB_TSIG_SECRET" "$1" |
		nsupdate -t 5 -u 1 -r 2
}

case "$action" in
present) update "update add $fqdn 60 TXT \"$value\"" ;;
cleanup) update "update delete $fqdn TXT \"$value\"" ;;
timeout) ;;
*)
	echo "lego-nsupdate-exec.sh: unknown action $action" >&2
	exit 2
	;;
esac
