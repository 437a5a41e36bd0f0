# shellcheck shell=bash
# Helpers for conformance/run: installing the clients, starting and stopping
# the background servers, and certificate checks with openssl.
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
