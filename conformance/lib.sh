# shellcheck shell=bash
# Helpers for conformance/run, conformance/ha and benches/compare: installing
# the clients, the flow runner, starting and stopping the background
# servers, and certificate checks with openssl.
#
# Sourced, never executed. Expects CONF_DIR (this folder) and WORK (the run's
# scratch folder) to be set. Never kills a process it did not start itself.

# PIDs of every background process this run started, killed on exit.
STARTED_PIDS=()

# say MESSAGE: progress on stderr, so stdout stays the PASS/FAIL report.
say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- installs

INSTALL_LOG=${INSTALL_LOG:-$CONF_DIR/work/install.log}

# apt_install PKG...: installs the Debian packages that are missing, running
# `apt-get update` only when something is missing. Waits for another apt run
# holding the dpkg lock (DPkg::Lock::Timeout) rather than failing.
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing Debian packages: ${missing[*]} (log: $INSTALL_LOG)"
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
		-o DPkg::Lock::Timeout=600)
	if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } \
		>>"$INSTALL_LOG" 2>&1; then
		say "apt-get install ${missing[*]} failed; see $INSTALL_LOG"
		tail -n 20 "$INSTALL_LOG" >&2
		return 1
	fi
}

# The certbot release the flows were written against; bump it deliberately.
CERTBOT_VERSION=${CERTBOT_VERSION:-5.8.0}

# install_certbot: certbot from PyPI into conformance/.venv (kept between
# runs; reinstalled only when the venv has no certbot of that version).
install_certbot() {
	local venv=$CONF_DIR/.venv
	if [ "$("$venv/bin/certbot" --version 2>/dev/null)" = "certbot $CERTBOT_VERSION" ]; then
		return 0
	fi
	say "installing certbot into $venv (log: $INSTALL_LOG)"
	rm -rf "$venv"
	if ! python3 -m venv "$venv" >>"$INSTALL_LOG" 2>&1; then
		# Debian's python3 needs python3-venv for ensurepip.
		apt_install python3-venv || return 1
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv" >>"$INSTALL_LOG" 2>&1 || {
			say "python3 -m venv failed; see $INSTALL_LOG"
			return 1
		}
	fi
	"$venv/bin/pip" install -q "certbot==$CERTBOT_VERSION" >>"$INSTALL_LOG" 2>&1 || {
		say "pip install certbot==$CERTBOT_VERSION failed; see $INSTALL_LOG"
		tail -n 20 "$INSTALL_LOG" >&2
		return 1
	}
}

# The SMTP server the notification flows send to (aiosmtpd, from PyPI).
AIOSMTPD_VERSION=${AIOSMTPD_VERSION:-1.4.6}

# install_aiosmtpd: aiosmtpd into conformance/.venv beside certbot.
install_aiosmtpd() {
	local venv=$CONF_DIR/.venv
	"$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null && return 0
	say "installing aiosmtpd into $venv (log: $INSTALL_LOG)"
	"$venv/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" >>"$INSTALL_LOG" 2>&1 || {
		say "pip install aiosmtpd==$AIOSMTPD_VERSION failed; see $INSTALL_LOG"
		return 1
	}
}

# ---------------------------------------------------------------- flow runner

# Flows run in a subshell each; fail writes its reason to REASON_FILE, and
# flow prints one PASS/FAIL line per flow. FLOW_TIMEOUT bounds each step.
PASSED=0
FAILED=0
REASON_FILE=$WORK/.reason
FLOW_TIMEOUT=${FLOW_TIMEOUT:-180}

# report: the totals; false when a flow failed.
report() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# setup_fail REASON [LOG]: the run cannot go on; counts as one failure.
setup_fail() {
	echo "FAIL setup: $1"
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		# A panic's message is worth more than the backtrace under it.
		if grep -q 'panicked at' "$2"; then
			grep -m1 -A1 'panicked at' "$2"
		else
			tail -n 40 "$2"
		fi | sed 's/^/    /'
		echo "    (full log: $2)"
	fi
	FAILED=$((FAILED + 1))
	report
	exit 1
}

# fail REASON: ends the current flow (flows run in a subshell).
fail() {
	echo "conformance: $1"
	printf '%s' "$1" >"$REASON_FILE"
	exit 1
}

# step DESCRIPTION CMD...: runs CMD (echoed into the flow log), bounded in time.
step() {
	local what=$1 rc
	shift
	echo "+ $*"
	timeout --kill-after=10 "$FLOW_TIMEOUT" "$@"
	rc=$?
	[ $rc -eq 0 ] && return 0
	[ $rc -eq 124 ] && fail "$what timed out after ${FLOW_TIMEOUT}s"
	fail "$what failed (exit $rc)"
}

# flow NAME FUNCTION: runs one flow, prints its PASS/FAIL line.
flow() {
	local name=$1 fn=$2 log=$LOGS/$1.log rc
	: >"$REASON_FILE"
	(
		set -u -o pipefail
		"$fn"
	) >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "PASS $name"
		PASSED=$((PASSED + 1))
	else
		local reason
		reason=$(cat "$REASON_FILE")
		echo "FAIL $name: ${reason:-exit status $rc}"
		tail -n 30 "$log" | sed 's/^/    /'
		FAILED=$((FAILED + 1))
	fi
	return $rc
}

# ---------------------------------------------------------------- servers

# start_challtestsrv: pebble-challtestsrv as the mock DNS on DNS_ADDR, its
# management API on MGMT_ADDR. Only its DNS and management API: the clients
# answer the challenges, and its own challenge servers would take their
# ports. Newer versions also serve DNS over HTTPS (-doh), off here too.
start_challtestsrv() {
	local args=(-dns01 "$DNS_ADDR" -management "$MGMT_ADDR" -http01 "" -https01 "" -tlsalpn01 ""
		-defaultIPv4 127.0.0.1 -defaultIPv6 "")
	pebble-challtestsrv -h 2>&1 | grep -q -- '-doh ' && args+=(-doh "")
	start_bg challtestsrv "$LOGS/challtestsrv.log" pebble-challtestsrv "${args[@]}"
	# shellcheck disable=SC2154 # set by start_bg
	wait_until 20 "$PID_challtestsrv" curl -fsS -X POST "http://$MGMT_ADDR/clear-txt" \
		-d '{"host":"ready.example.test."}' ||
		setup_fail "pebble-challtestsrv did not start" "$LOGS/challtestsrv.log"
}

# make_localhost_tls DIR SUBJECT: a throwaway CA (DIR/tls-ca.pem) and a
# certificate for localhost and 127.0.0.1 it signed (DIR/cert.pem, key.pem).
make_localhost_tls() {
	local d=$1 subject=$2
	mkdir -p "$d"
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$d/tls-ca.key" -out "$d/tls-ca.pem" -days 2 \
			-subj "/CN=$subject" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-keyout "$d/key.pem" -out "$d/tls.csr" -subj "/CN=localhost" &&
			printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" \
				"basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
				"extendedKeyUsage=serverAuth" "subjectKeyIdentifier=hash" \
				"authorityKeyIdentifier=keyid" >"$d/tls.ext" &&
			openssl x509 -req -in "$d/tls.csr" -CA "$d/tls-ca.pem" -CAkey "$d/tls-ca.key" \
				-CAcreateserial -days 2 -extfile "$d/tls.ext" -out "$d/cert.pem"
	} >"$LOGS/tls-$(basename "$d").log" 2>&1 || setup_fail "making a TLS certificate in $d" "$LOGS/tls-$(basename "$d").log"
}

# ---------------------------------------------------------------- processes

# start_bg NAME LOG CMD...: starts CMD in the background with its output in
# LOG and remembers its PID (the command itself, not a wrapper shell).
start_bg() {
	local name=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	# A flow runs in a subshell: what it starts is recorded in a file too.
	[ -n "${STARTED_PIDS_FILE:-}" ] && echo "$pid" >>"$STARTED_PIDS_FILE"
	eval "PID_${name}=$pid"
	say "started $name (pid $pid, log $log)"
}

# stop_all: TERM, then KILL after 5 s, exactly the PIDs start_bg recorded.
stop_all() {
	local pid
	if [ -n "${STARTED_PIDS_FILE:-}" ] && [ -s "$STARTED_PIDS_FILE" ]; then
		mapfile -t -O "${#STARTED_PIDS[@]}" STARTED_PIDS < <(sort -u "$STARTED_PIDS_FILE")
		: >"$STARTED_PIDS_FILE"
	fi
	for pid in "${STARTED_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED_PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	STARTED_PIDS=()
}

# alive PID: whether the process still runs.
alive() { kill -0 "$1" 2>/dev/null; }

# stop_pid PID: TERM, then KILL after 5 s, and reap it (a child of this shell).
stop_pid() {
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 50); do alive "$1" || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# wait_until SECONDS PID CMD...: polls CMD every 0.2 s until it succeeds;
# fails early when PID (the server being waited for) has exited.
wait_until() {
	local secs=$1 pid=$2
	shift 2
	for _ in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		alive "$pid" || return 1
		sleep 0.2
	done
	return 1
}

# tcp_port_in_use PORT: whether something listens on 127.0.0.1:PORT.
tcp_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- certificates

# cert_serial FILE: the first certificate's serial, uppercase hex, no leading zeros.
cert_serial() {
	openssl x509 -noout -serial -in "$1" | sed 's/^serial=//' | tr 'a-f' 'A-F' | sed 's/^0*//'
}

# cert_sans FILE: the DNS names in the first certificate's SAN, sorted, one a line.
cert_sans() {
	openssl x509 -noout -ext subjectAltName -in "$1" | tr ',' '\n' |
		sed -n 's/^ *DNS://p' | sort
}

# crl_url FILE: the first URI in the certificate's CRL distribution points.
crl_url() {
	openssl x509 -noout -ext crlDistributionPoints -in "$1" 2>/dev/null |
		sed -n 's/^ *URI://p' | head -n 1
}

# ---------------------------------------------------------------- the hub

# write_hub_config FILE [LINE...]: a hub config validating against the mock
# DNS (DNS_ADDR) and the clients' challenge ports (HTTP01_PORT,
# TLSALPN01_PORT), one attempt each; LINEs go under [validation] too.
write_hub_config() {
	local file=$1
	shift
	{
		printf '[validation]\nresolvers = ["%s"]\nhttp01_port = %s\ntlsalpn01_port = %s\nattempts = 1\n' \
			"$DNS_ADDR" "$HTTP01_PORT" "$TLSALPN01_PORT"
		[ $# -eq 0 ] || printf '%s\n' "$@"
	} >"$file"
}

# launch_hub NAME CONFIG [PORT]: runs `acmehub serve` with CONFIG and a data
# dir of its own (kept across launches of one NAME), on PORT or a free port;
# sets HUB_URL, HUB_DATA and HUB_BIN (the binary, built once). Needs REPO,
# PROFILE (debug or release), WORK and LOGS.
launch_hub() {
	local name=$1 config=$2 d=$WORK/$1 port=${3:-}
	if [ -z "${HUB_BIN:-}" ]; then
		HUB_BIN=${ACMEHUB_BIN:-}
		if [ -z "$HUB_BIN" ]; then
			local target=${CARGO_TARGET_DIR:-$REPO/target}
			local flags=()
			[ "$PROFILE" = release ] && flags=(--release)
			say "building acmehub ($PROFILE; log $LOGS/build.log)"
			(cd "$REPO" && cargo build "${flags[@]}" --bins) >"$LOGS/build.log" 2>&1 ||
				setup_fail "cargo build --bins" "$LOGS/build.log"
			HUB_BIN=$target/$PROFILE/acmehub
		fi
		[ -x "$HUB_BIN" ] || setup_fail "no acmehub binary at $HUB_BIN"
	fi
	mkdir -p "$d/data"
	[ -n "$port" ] || port=$(free_port) || setup_fail "finding a free port"
	start_bg "$name" "$LOGS/$name.log" env RUST_LOG="${RUST_LOG:-info}" "$HUB_BIN" serve \
		--config "$config" --listen "127.0.0.1:$port" --data-dir "$d/data"
	local pid_var=PID_$name
	HUB_URL=https://localhost:$port
	HUB_DATA=$d/data
	wait_until 60 "${!pid_var}" test -s "$HUB_DATA/ca/root.pem" ||
		setup_fail "$name did not create $HUB_DATA/ca/root.pem" "$LOGS/$name.log"
	wait_until 30 "${!pid_var}" curl -fsS --cacert "$HUB_DATA/ca/root.pem" "$HUB_URL/healthz" ||
		setup_fail "$name /healthz did not answer 200" "$LOGS/$name.log"
}

# ---------------------------------------------------------------- Pebble

# start_pebble_as NAME VAR PORT DNS: a Pebble on 127.0.0.1:PORT (management
# API on PORT+1000) resolving through DNS, offering one alternate chain;
# sets PID_NAME, VAR_DIR_URL, VAR_TLS_CA, VAR_ROOT and VAR_ALT_ROOT (the
# alternate chain's root).
# Needs WORK, LOGS, HTTP01_PORT, TLSALPN01_PORT and a setup_fail function.
start_pebble_as() {
	local name=$1 var=$2 port=$3 dns=$4 d=$WORK/$1
	local mgmt=$((port + 1000))
	mkdir -p "$d"
	# Pebble's listener needs a TLS certificate; the Debian package ships none.
	make_localhost_tls "$d" "conformance Pebble TLS CA"
	cat >"$d/pebble-config.json" <<-EOF
		{
		  "pebble": {
		    "listenAddress": "127.0.0.1:$port",
		    "managementListenAddress": "127.0.0.1:$mgmt",
		    "certificate": "$d/cert.pem",
		    "privateKey": "$d/key.pem",
		    "httpPort": $HTTP01_PORT,
		    "tlsPort": $TLSALPN01_PORT,
		    "ocspResponderURL": "",
		    "externalAccountBindingRequired": false
		  }
		}
	EOF
	tcp_port_in_use "$port" && setup_fail "port $port on 127.0.0.1 is already in use"
	# NONCEREJECT=0: Pebble otherwise rejects 5% of nonces on purpose, which
	# tests client retries, not the flows here.
	start_bg "$name" "$LOGS/$name.log" env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_ALTERNATE_ROOTS=1 \
		pebble -config "$d/pebble-config.json" -dnsserver "$dns"
	local pid_var=PID_$name
	printf -v "${var}_DIR_URL" '%s' "https://localhost:$port/dir"
	printf -v "${var}_TLS_CA" '%s' "$d/tls-ca.pem"
	# Pebble makes a new root for issued certificates at every start.
	printf -v "${var}_ROOT" '%s' "$d/root.pem"
	printf -v "${var}_ALT_ROOT" '%s' "$d/alt-root.pem"
	wait_until 30 "${!pid_var}" curl -fsS --cacert "$d/tls-ca.pem" "https://localhost:$port/dir" ||
		setup_fail "Pebble ($name) did not start" "$LOGS/$name.log"
	curl -fsS --cacert "$d/tls-ca.pem" -o "$d/root.pem" "https://localhost:$mgmt/roots/0" ||
		setup_fail "fetching Pebble's root ($name)" "$LOGS/$name.log"
	curl -fsS --cacert "$d/tls-ca.pem" -o "$d/alt-root.pem" "https://localhost:$mgmt/roots/1" ||
		setup_fail "fetching Pebble's alternate root ($name)" "$LOGS/$name.log"
}
