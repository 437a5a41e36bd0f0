# shellcheck shell=bash
# A small real-DNS lab on loopback, for flows that need real authoritative
# servers and a real recursive resolver rather than pebble-challtestsrv:
#
#   127.0.10.1:53  BIND 9, authoritative for customer.test and delegated.test,
#                  both open to RFC 2136 updates signed with the TSIG key hub-key
#   127.0.10.2:53  Unbound, recursive for the lab: customer.test and
#                  delegated.test from BIND, acme.hub.test from the hub
#   127.0.10.3:53  reserved for the hub under test (serves acme.hub.test)
#
# Sourced after lib.sh, never executed. Expects WORK and LOGS. Both servers
# are started with start_bg, so stop_all stops them.

LAB_BIND=127.0.10.1
LAB_RESOLVER=127.0.10.2
LAB_HUB_DNS=127.0.10.3
LAB_TECH_ZONE=acme.hub.test
LAB_TSIG_NAME=hub-key
LAB_TSIG_SECRET=
export LAB_BIND LAB_RESOLVER LAB_HUB_DNS LAB_TECH_ZONE LAB_TSIG_NAME LAB_TSIG_SECRET

# _dnslab_soa SERVER ZONE: SERVER answers ZONE's SOA (kdig exits 0 on
# REFUSED or SERVFAIL too, so an empty answer counts as no answer).
_dnslab_soa() {
	[ -n "$(kdig @"$1" SOA "$2" +short +timeout=1 +retry=0 2>/dev/null)" ]
}

# dnslab_start: installs and starts BIND and Unbound; sets the LAB_* variables.
dnslab_start() {
	# nsupdate is in bind9-dnsutils; bind9-utils has named-checkconf.
	apt_install bind9 bind9-utils bind9-dnsutils unbound knot-dnsutils iproute2 || return 1
	local d=$WORK/dnslab a zone
	rm -rf "$d"
	mkdir -p "$d/bind" "$d/unbound" "$LOGS" || return 1

	# BIND binds interface addresses only; all of 127/8 routes to lo anyway.
	# (No `ip | grep -q`: under pipefail, ip's SIGPIPE would read as absent.)
	for a in "$LAB_BIND" "$LAB_RESOLVER" "$LAB_HUB_DNS"; do
		case $(ip -4 addr show dev lo) in *"inet $a/"*) continue ;; esac
		ip addr add "$a/32" dev lo || { say "dnslab: cannot add $a to lo"; return 1; }
	done
	# A lab left over from a killed run would answer the readiness checks
	# below with its own, older key.
	if grep -Eq "($LAB_BIND|$LAB_RESOLVER|0\.0\.0\.0|\*):53 " <<<"$(ss -Hlntu 'sport = :53')"; then
		say "dnslab: something already listens on port 53 of $LAB_BIND or $LAB_RESOLVER:"
		ss -Hlntup 'sport = :53' >&2
		return 1
	fi

	tsig-keygen -a hmac-sha256 "$LAB_TSIG_NAME" >"$d/bind/hub-key.conf" || return 1
	LAB_TSIG_SECRET=$(sed -n 's/^[[:space:]]*secret "\(.*\)";/\1/p' "$d/bind/hub-key.conf")
	[ -n "$LAB_TSIG_SECRET" ] || { say "dnslab: no secret in tsig-keygen's output"; return 1; }

	# TTL 1 and negative TTL 1: what a flow just changed is what resolvers see.
	for zone in customer.test delegated.test; do
		cat >"$d/bind/$zone.db" <<-EOF
			\$TTL 1
			@	IN SOA	ns1.$zone. hostmaster.$zone. 1 60 60 600 1
			@	IN NS	ns1.$zone.
			ns1	IN A	$LAB_BIND
		EOF
	done
	# controls {}: no rndc channel (it would take 127.0.0.1:953 and read
	# /etc/bind/rndc.key). -g logs to stderr, so no logging statement.
	cat >"$d/bind/named.conf" <<-EOF
		include "$d/bind/hub-key.conf";
		options {
			directory "$d/bind";
			pid-file none;
			session-keyfile none;
			listen-on port 53 { $LAB_BIND; };
			listen-on-v6 { none; };
			automatic-interface-scan no;
			recursion no;
			dnssec-validation no;
			notify no;
			querylog yes;
		};
		controls { };
		zone "customer.test" { type primary; file "customer.test.db"; allow-update { key $LAB_TSIG_NAME; }; };
		zone "delegated.test" { type primary; file "delegated.test.db"; allow-update { key $LAB_TSIG_NAME; }; };
	EOF
	named-checkconf -z "$d/bind/named.conf" >"$LOGS/bind-checkconf.log" 2>&1 || {
		say "dnslab: named-checkconf failed"; cat "$LOGS/bind-checkconf.log" >&2; return 1
	}

	# Unbound resolves the lab only: "." is refused, so nothing outside test.
	# is ever asked for, and queries leave from 127.0.10.2 only. "test." is
	# one of its RFC 6761 default zones, hence transparent. Caches (answers
	# and server state) are kept to a second so each poll sees the servers'
	# state now; the hub may start after Unbound, hence infra-keep-probing.
	cat >"$d/unbound/unbound.conf" <<-EOF
		server:
			interface: $LAB_RESOLVER
			port: 53
			outgoing-interface: $LAB_RESOLVER
			do-ip6: no
			num-threads: 1
			username: ""
			chroot: ""
			directory: "$d/unbound"
			pidfile: "$d/unbound/unbound.pid"
			use-syslog: no
			logfile: ""
			verbosity: 1
			log-queries: yes
			access-control: 127.0.0.0/8 allow
			do-not-query-localhost: no
			module-config: "iterator"
			cache-max-ttl: 0
			cache-max-negative-ttl: 0
			serve-expired: no
			prefetch: no
			infra-host-ttl: 1
			infra-keep-probing: yes
			local-zone: "." refuse
			local-zone: "test." transparent
		remote-control:
			control-enable: no
		stub-zone:
			name: "customer.test"
			stub-addr: $LAB_BIND
		stub-zone:
			name: "delegated.test"
			stub-addr: $LAB_BIND
		stub-zone:
			name: "$LAB_TECH_ZONE"
			stub-addr: $LAB_HUB_DNS
	EOF
	unbound-checkconf "$d/unbound/unbound.conf" >"$LOGS/unbound-checkconf.log" 2>&1 || {
		say "dnslab: unbound-checkconf failed"; cat "$LOGS/unbound-checkconf.log" >&2; return 1
	}

	# As root without -u: the lab's files are root's, and nothing to drop to.
	start_bg bind "$LOGS/bind.log" named -g -4 -c "$d/bind/named.conf"
	start_bg unbound "$LOGS/unbound.log" unbound -d -c "$d/unbound/unbound.conf"
	# shellcheck disable=SC2154 # set by start_bg
	wait_until 20 "$PID_bind" _dnslab_soa "$LAB_BIND" customer.test || {
		say "dnslab: BIND did not answer on $LAB_BIND:53 (log $LOGS/bind.log)"
		tail -n 20 "$LOGS/bind.log" >&2
		return 1
	}
	# shellcheck disable=SC2154 # set by start_bg
	wait_until 20 "$PID_unbound" _dnslab_soa "$LAB_RESOLVER" customer.test || {
		say "dnslab: Unbound did not resolve via $LAB_RESOLVER:53 (log $LOGS/unbound.log)"
		tail -n 20 "$LOGS/unbound.log" >&2
		return 1
	}
	say "dnslab: BIND on $LAB_BIND, Unbound on $LAB_RESOLVER"
}

# lab_nsupdate ZONE COMMAND...: one RFC 2136 update of ZONE at BIND, signed
# with the lab's TSIG key, one nsupdate command per argument, e.g.
#   lab_nsupdate delegated.test "update add _acme-challenge.b.delegated.test. 1 CNAME x.acme.hub.test."
# The key goes in on stdin, not in argv. Returns nsupdate's status.
lab_nsupdate() {
	[ $# -ge 2 ] || { say "usage: lab_nsupdate ZONE COMMAND..."; return 2; }
	local zone=$1
	shift
	{
		printf 'server %s 53\nzone %s\nkey hmac-sha256:%s %s\n' \
			"$LAB_BIND" "$zone" "$LAB_TSIG_NAME" "$LAB_TSIG_SECRET"
		printf '%s\n' "$@"
		printf 'send\n'
	} | nsupdate -t 5 -u 1 -r 2
}
