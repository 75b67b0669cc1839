#!/usr/bin/env bash
# bench/peers: xdpnet beside HAProxy, nginx and Caddy in one run, same lab,
# same origin (nginx serving a SIZE-byte file on two addresses), same load.
#   part h1 (issue 22): HTTP/1.1 clients (wrk) -> gateway -> HTTP/1.1 origins
#   part https (issue 21): HTTPS clients (h2load, h2 over TLS) -> gateway -> HTTP/1.1 origins
# See README.md beside this file for the method and the outputs.
#
# Usage (root):  bash bench/peers/run.sh           (or: make bench-peers)
#                bash bench/peers/run.sh summarize RESULTS_DIR
# Env: ROUNDS=3, DUR=5 (s per load), CONNS="16 64", SIZE=1024,
# GATEWAYS="xdp kernel haproxy nginx caddy caddy-h2c" (part h1),
# TLS_GATEWAYS="xdp kernel caddy" (part https), PARTS="h1 https",
# XDPNET (binary; default: built from this checkout into the temp dir),
# OUT=bench/results/peers-<UTC time>, H2LOAD_THREADS=2, TLS_CONNS=64, TLS_STREAMS=10,
# PPROF=1 (xdpnet's CPU and allocation profiles of each load).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# ---------------------------------------------------------------- summary ---
# median over rounds of column m for key (gateway, shape).
AWK_MEDIAN='
function median(key,   n, i, j, t, a) {
	n = cnt[key]
	if (n == 0) return ""
	for (i = 1; i <= n; i++) a[i] = val[key, i]
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
	return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function add(k, v) { if (v == "" || v == "-" || v == "na") return; cnt[k]++; val[k, cnt[k]] = v + 0 }
function fmt(v, p) { return (v == "") ? "-" : sprintf(p, v) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f×", a / b) }
function goal(r, op, x) { if (r == "-") return ""; r += 0; return (op == ">=" ? r >= x : r <= x) ? " (met)" : " (not met)" }
'

summarize_h1() { # summarize_h1 RAW_H1.tsv
	awk -F'\t' "$AWK_MEDIAN"'
	NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{
		g = $col["gateway"]; c = $col["conns"]
		if (!(g in seeng)) { seeng[g] = 1; gl[++ng] = g }
		if (!(c in seenc)) { seenc[c] = 1; cl[++nc] = c }
		runs[g, c]++
		k = g SUBSEP c SUBSEP
		add(k "rps", $col["rps"]); add(k "p50", $col["p50_ms"]); add(k "p99", $col["p99_ms"])
		add(k "cpu", $col["gw_cpu_us_per_req"]); add(k "host", $col["host_cpu_us_per_req"])
		add(k "oreuse", $col["origin_reuse"]); add(k "xreuse", $col["xdpnet_reuse"]); add(k "steal", $col["steal_pct"])
		add(k "oconns", $col["origin_conns"]); add(k "oreqs", $col["origin_reqs"])
		errs[g, c] += $col["non2xx"] + $col["sock_errs"]
	}
	END {
		for (ci = 1; ci <= nc; ci++) {
			c = cl[ci]
			printf "\n### HTTP/1.1 -> gateway -> HTTP/1.1: wrk -t2 -c%s, GET of %s bytes (medians over rounds)\n\n", c, size
			print "| gateway | runs | req/s | p50 ms | p99 ms | gateway CPU-µs/req | host CPU-µs/req | non-2xx + socket errors | origin conns accepted / requests | backend reuse (origin) | backend reuse (xdpnet /stats) | steal % |"
			print "|---|---|---|---|---|---|---|---|---|---|---|---|"
			for (gi = 1; gi <= ng; gi++) {
				g = gl[gi]; k = g SUBSEP c SUBSEP
				printf "| %s | %d | %s | %s | %s | %s | %s | %d | %s / %s | %s | %s | %s |\n", g, runs[g, c],
					fmt(median(k "rps"), "%.0f"), fmt(median(k "p50"), "%.2f"), fmt(median(k "p99"), "%.2f"),
					fmt(median(k "cpu"), "%.1f"), fmt(median(k "host"), "%.1f"), errs[g, c],
					fmt(median(k "oconns"), "%.0f"), fmt(median(k "oreqs"), "%.0f"),
					fmt(100 * median(k "oreuse"), "%.2f%%"), (median(k "xreuse") == "") ? "-" : sprintf("%.2f%%", 100 * median(k "xreuse")),
					fmt(median(k "steal"), "%.1f")
			}
			if (!(("xdp" SUBSEP c) in runs) && !(("kernel" SUBSEP c) in runs)) continue
			print ""
			print "| ratio of medians | req/s ÷ caddy (goal ≥ 3×) | gateway CPU-µs/req ÷ haproxy (goal ≤ 1.5×) | req/s ÷ haproxy | req/s ÷ nginx |"
			print "|---|---|---|---|---|"
			for (gi = 1; gi <= ng; gi++) {
				g = gl[gi]
				if (g != "xdp" && g != "kernel") continue
				k = g SUBSEP c SUBSEP
				r1 = ratio(median(k "rps"), median("caddy" SUBSEP c SUBSEP "rps"))
				r2 = ratio(median(k "cpu"), median("haproxy" SUBSEP c SUBSEP "cpu"))
				printf "| xdpnet %s | %s%s | %s%s | %s | %s |\n", g, r1, goal(r1, ">=", 3), r2, goal(r2, "<=", 1.5),
					ratio(median(k "rps"), median("haproxy" SUBSEP c SUBSEP "rps")),
					ratio(median(k "rps"), median("nginx" SUBSEP c SUBSEP "rps"))
			}
		}
	}' size="${SIZE:-1024}" "$1"
}

summarize_tls() { # summarize_tls RAW_TLS.tsv
	awk -F'\t' "$AWK_MEDIAN"'
	NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{
		g = $col["gateway"]; s = $col["shape"]
		if (!(g in seeng)) { seeng[g] = 1; gl[++ng] = g }
		runs[g, s]++
		k = g SUBSEP s SUBSEP
		add(k "rps", $col["rps"]); add(k "hs", $col["handshakes_per_s"]); add(k "mean", $col["mean_req_ms"])
		add(k "cpu", $col["gw_cpu_us_per_req"]); add(k "host", $col["host_cpu_us_per_req"])
		add(k "full", $col["xdpnet_full"]); add(k "resumed", $col["xdpnet_resumed"])
		fail[g, s] += $col["failed"]
		if ($col["tls"] != "") tls[g, s] = $col["tls"]
	}
	END {
		printf "\n### HTTPS -> gateway -> HTTP/1.1 (medians over rounds)\n\n"
		printf "keep-alive: h2load -t%s -c%s -m%s -D%s over TLS (h2); new connections: batches of h2load -c32 -n32 -m1, every connection a full handshake and one request, for %s s.\n\n", threads, tconns, tstreams, dur, dur
		print "| gateway | runs | keep-alive req/s | mean request ms | CPU-µs/req | host CPU-µs/req | failed | new-conn handshakes/s | CPU-µs/(handshake + request) | failed | xdpnet handshakes full / resumed | TLS |"
		print "|---|---|---|---|---|---|---|---|---|---|---|---|"
		for (gi = 1; gi <= ng; gi++) {
			g = gl[gi]; k = g SUBSEP "keepalive" SUBSEP; n = g SUBSEP "newconn" SUBSEP
			printf "| %s | %d | %s | %s | %s | %s | %d | %s | %s | %d | %s / %s | %s |\n", g, runs[g, "keepalive"],
				fmt(median(k "rps"), "%.0f"), fmt(median(k "mean"), "%.2f"), fmt(median(k "cpu"), "%.1f"), fmt(median(k "host"), "%.1f"),
				fail[g, "keepalive"], fmt(median(n "hs"), "%.0f"), fmt(median(n "cpu"), "%.1f"), fail[g, "newconn"],
				fmt(median(n "full"), "%.0f"), fmt(median(n "resumed"), "%.0f"), tls[g, "newconn"]
		}
		print ""
		print "| ratio of medians ÷ caddy | keep-alive req/s (goal ≥ 1.5×) | handshakes/s (goal ≥ 1.5×) | keep-alive CPU/req (goal ≤ 0.67×) | new-conn CPU/(handshake + request) (goal ≤ 0.67×) |"
		print "|---|---|---|---|---|"
		for (gi = 1; gi <= ng; gi++) {
			g = gl[gi]
			if (g == "caddy") continue
			k = g SUBSEP "keepalive" SUBSEP; n = g SUBSEP "newconn" SUBSEP
			r1 = ratio(median(k "rps"), median("caddy" SUBSEP "keepalive" SUBSEP "rps"))
			r2 = ratio(median(n "hs"), median("caddy" SUBSEP "newconn" SUBSEP "hs"))
			r3 = ratio(median(k "cpu"), median("caddy" SUBSEP "keepalive" SUBSEP "cpu"))
			r4 = ratio(median(n "cpu"), median("caddy" SUBSEP "newconn" SUBSEP "cpu"))
			printf "| xdpnet %s | %s%s | %s%s | %s%s | %s%s |\n", g, r1, goal(r1, ">=", 1.5), r2, goal(r2, ">=", 1.5), r3, goal(r3, "<=", 0.67), r4, goal(r4, "<=", 0.67)
		}
	}' threads="${H2LOAD_THREADS:-2}" tconns="${TLS_CONNS:-64}" tstreams="${TLS_STREAMS:-10}" dur="${DUR:-5}" "$1"
}

summarize() { # summarize RESULTS_DIR
	[[ -s $1/raw-h1.tsv && $(wc -l <"$1/raw-h1.tsv") -gt 1 ]] && summarize_h1 "$1/raw-h1.tsv"
	[[ -s $1/raw-tls.tsv && $(wc -l <"$1/raw-tls.tsv") -gt 1 ]] && summarize_tls "$1/raw-tls.tsv"
	return 0
}

if [[ ${1:-} == summarize ]]; then
	summarize "${2:?usage: run.sh summarize RESULTS_DIR}"
	exit 0
fi

# ------------------------------------------------------------------ knobs ---
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
CONNS=${CONNS:-"16 64"}
SIZE=${SIZE:-1024}
GATEWAYS=${GATEWAYS-"xdp kernel haproxy nginx caddy caddy-h2c"}
TLS_GATEWAYS=${TLS_GATEWAYS-"xdp kernel caddy"}
PARTS=${PARTS:-"h1 https"}
H2LOAD_THREADS=${H2LOAD_THREADS:-2}
TLS_CONNS=${TLS_CONNS:-64}
TLS_STREAMS=${TLS_STREAMS:-10}
XDPNET=${XDPNET:-}
PPROF=${PPROF:-}
OUT=${OUT:-$REPO/bench/results/peers-$(date -u +%Y%m%dT%H%M%SZ)}
[[ $OUT == /* ]] || OUT=$PWD/$OUT
LOAD_TIMEOUT=$((DUR + 25))

die() { echo "bench/peers: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (namespaces, veth, XDP)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $DUR =~ ^[1-9][0-9]*$ && $SIZE =~ ^[1-9][0-9]*$ ]] || die "ROUNDS, DUR, SIZE must be positive integers"
[[ " $PARTS " == *" h1 "* ]] || GATEWAYS=""
[[ " $PARTS " == *" https "* ]] || TLS_GATEWAYS=""
for g in $GATEWAYS; do [[ $g =~ ^(xdp|kernel|haproxy|nginx|caddy|caddy-h2c)$ ]] || die "unknown gateway $g in GATEWAYS"; done
for g in $TLS_GATEWAYS; do [[ $g =~ ^(xdp|kernel|caddy)$ ]] || die "unknown gateway $g in TLS_GATEWAYS (xdp kernel caddy)"; done
[[ -n "$GATEWAYS$TLS_GATEWAYS" ]] || die "nothing to run (GATEWAYS, TLS_GATEWAYS, PARTS)"
for t in ip ethtool curl jq openssl awk getconf nginx unshare timeout; do command -v "$t" >/dev/null || die "$t not found (make deps)"; done
[[ -z $GATEWAYS ]] || command -v wrk >/dev/null || die "wrk not found (make deps)"
[[ -z $TLS_GATEWAYS ]] || command -v h2load >/dev/null || die "h2load not found (make deps: nghttp2-client)"
[[ " $GATEWAYS " != *" haproxy "* ]] || command -v haproxy >/dev/null || die "haproxy not found (make deps)"
[[ " $GATEWAYS $TLS_GATEWAYS " != *" caddy"* ]] || command -v caddy >/dev/null || die "caddy not found (make deps)"

# `ip netns add` bind-mounts the namespaces on /run/netns: do it in a mount
# namespace of our own, so that the mount never hides or shares another
# lab's. The namespace files stay visible to others as names only.
if [[ -z ${BENCH_PEERS_UNSHARED:-} ]]; then
	exec env BENCH_PEERS_UNSHARED=1 unshare -m --propagation private bash "${BASH_SOURCE[0]}" "$@"
fi

# ----------------------------------------------------------------- set-up ---
NS_C=bp-cli NS_E=bp-gw NS_B=bp-orig
IF_EC=bp-gw-c IF_EB=bp-gw-b IF_C=bp-cli0 IF_B=bp-orig0
MAC_EC=02:00:c6:1f:00:01 MAC_C=02:00:c6:1f:00:02
MAC_EB=02:00:c6:20:00:01 MAC_B=02:00:c6:20:00:02
GW_C=198.18.31.1 CLIENT=198.18.31.2 GW_B=198.18.32.1
ORIGINS=(198.18.32.10 198.18.32.11)
STATUS_URL=http://198.18.32.10:8081/status
URL=http://$GW_C:8080/f/$SIZE
TLS_URL=https://$GW_C:8443/f/$SIZE
declare -A ADMIN=([xdp]=127.0.0.1:9941 [kernel]=127.0.0.1:9942)
CLK_TCK=$(getconf CLK_TCK)

for ns in $NS_C $NS_E $NS_B; do
	[[ ! -e /run/netns/$ns ]] || die "namespace $ns exists (another run, or a leftover of a killed one: ip netns del $ns)"
done
mkdir -p "$OUT"
WORK=$(mktemp -d -t benchpeers.XXXXXX)
CREATED_NS=()
ORIGIN_PID=""
GW_PID=""

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

stop_pid() { # stop_pid PID [GRACE_S]: SIGTERM, wait, SIGKILL; by PID only
	local pid=$1 grace=${2:-10} i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "pid $pid did not stop in ${grace}s: SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM ERR
	set +e
	[[ -n $GW_PID ]] && stop_pid "$GW_PID" 10
	[[ -n $ORIGIN_PID ]] && stop_pid "$ORIGIN_PID" 10
	for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
	[[ $rc != 0 ]] && echo "bench/peers: exiting with status $rc; lab removed" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "bench/peers: error at line $LINENO: $BASH_COMMAND" >&2' ERR

if [[ -z $XDPNET && -n "$GATEWAYS$TLS_GATEWAYS" ]]; then
	log "building xdpnet from $REPO"
	(cd "$REPO" && timeout 600 go build -o "$WORK/xdpnet" ./cmd/xdpnet) || die "go build ./cmd/xdpnet failed"
	XDPNET=$WORK/xdpnet
fi

# Certificate for part https: ECDSA P-256, SAN IP of the gateway, one for both.
mkdir -p "$WORK/tls" "$WORK/www/f" "$WORK/caddy" "$WORK/nginx-gw" "$WORK/nginx-origin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" -subj "/CN=$GW_C" \
	-addext "subjectAltName=IP:$GW_C" 2>"$WORK/openssl.log" || die "openssl: $(cat "$WORK/openssl.log")"
head -c "$SIZE" /dev/urandom >"$WORK/www/f/$SIZE"
for f in xdpnet-xdp.yaml xdpnet-kernel.yaml haproxy.cfg nginx-gw.conf nginx-origin.conf Caddyfile Caddyfile-h2c; do
	sed "s#@WORK@#$WORK#g" "$HERE/$f" >"$WORK/$f"
done
if [[ -n $PPROF ]]; then
	for f in xdpnet-xdp.yaml xdpnet-kernel.yaml; do echo "admin_pprof: true" >>"$WORK/$f"; done
fi
for g in $GATEWAYS $TLS_GATEWAYS; do
	case $g in
	xdp | kernel) "$XDPNET" run -c "$WORK/xdpnet-$g.yaml" -check >/dev/null || die "xdpnet-$g.yaml does not validate" ;;
	haproxy) haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy -c failed on haproxy.cfg" ;;
	caddy | caddy-h2c)
		cf=Caddyfile
		[[ $g == caddy-h2c ]] && cf=Caddyfile-h2c
		caddy adapt --config "$WORK/$cf" --adapter caddyfile --validate >/dev/null 2>&1 || die "caddy adapt --validate failed on $cf"
		;;
	esac
done

log "results in $OUT; xdpnet $XDPNET; ROUNDS=$ROUNDS DUR=$DUR CONNS='$CONNS' SIZE=$SIZE GATEWAYS='$GATEWAYS' TLS_GATEWAYS='$TLS_GATEWAYS'"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "xdpnet: $XDPNET, commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
	echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
	command -v haproxy >/dev/null && echo "haproxy: $(haproxy -v | sed -n 1p)"
	command -v caddy >/dev/null && echo "caddy: $(caddy version)"
	command -v wrk >/dev/null && echo "wrk: $( (wrk -v 2>&1 || true) | sed -n 1p)"
	command -v h2load >/dev/null && echo "h2load: $(h2load --version 2>&1 | sed -n 1p)"
	echo "openssl: $(openssl version)"
	echo "ROUNDS=$ROUNDS DUR=$DUR CONNS=$CONNS SIZE=$SIZE GATEWAYS=$GATEWAYS TLS_GATEWAYS=$TLS_GATEWAYS H2LOAD_THREADS=$H2LOAD_THREADS TLS_CONNS=$TLS_CONNS TLS_STREAMS=$TLS_STREAMS"
} >"$OUT/env.txt"
mkdir -p "$OUT/configs"
cp "$HERE"/{xdpnet-xdp.yaml,xdpnet-kernel.yaml,haproxy.cfg,nginx-gw.conf,nginx-origin.conf,Caddyfile,Caddyfile-h2c} "$OUT/configs/"

# Lab: three namespaces, two veth pairs created directly inside them
# (nothing in the root namespace), IPv4 only.
#   bp-cli: bp-cli0 198.18.31.2 -- bp-gw-c [bp-gw: 198.18.31.1 | 198.18.32.1] bp-gw-b -- bp-orig0 198.18.32.10, .11 :bp-orig
for ns in $NS_C $NS_E $NS_B; do
	ip netns add "$ns"
	CREATED_NS+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
done
ip -n $NS_E link add $IF_EC address $MAC_EC type veth peer name $IF_C address $MAC_C netns $NS_C
ip -n $NS_E link add $IF_EB address $MAC_EB type veth peer name $IF_B address $MAC_B netns $NS_B
# AF_XDP does not finish the partial checksums of the kernel peers' sends.
ip netns exec $NS_C ethtool -K $IF_C tx off >/dev/null
ip netns exec $NS_B ethtool -K $IF_B tx off >/dev/null
ip -n $NS_C addr add $CLIENT/24 dev $IF_C
for a in "${ORIGINS[@]}"; do ip -n $NS_B addr add "$a/24" dev $IF_B; done
for l in "$NS_E $IF_EC" "$NS_E $IF_EB" "$NS_C $IF_C" "$NS_B $IF_B"; do
	set -- $l
	ip -n "$1" link set "$2" up
done
# Same gateway MACs whichever gateway owns the addresses.
ip -n $NS_C neigh replace $GW_C lladdr $MAC_EC dev $IF_C nud permanent
ip -n $NS_B neigh replace $GW_B lladdr $MAC_EB dev $IF_B nud permanent

gw_kernel_addrs() { # on: the gateway namespace's kernel holds the addresses; off: the netstack does (xdp)
	if [[ $1 == on ]]; then
		ip -n $NS_E addr replace $GW_C/24 dev $IF_EC
		ip -n $NS_E addr replace $GW_B/24 dev $IF_EB
	else
		ip -n $NS_E addr flush dev $IF_EC
		ip -n $NS_E addr flush dev $IF_EB
	fi
}

# The origin, started once.
ip netns exec $NS_B nginx -p "$WORK/nginx-origin" -c "$WORK/nginx-origin.conf" -e "$WORK/nginx-origin/error.log" >"$OUT/origin.log" 2>&1 &
ORIGIN_PID=$!
ok=""
for ((i = 0; i < 100; i++)); do
	kill -0 "$ORIGIN_PID" 2>/dev/null || break
	if [[ $(ip netns exec $NS_B curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://${ORIGINS[1]}/f/$SIZE" 2>/dev/null) == 200 ]]; then ok=1; break; fi
	sleep 0.1
done
[[ -n $ok ]] || die "origin nginx did not start: $(cat "$OUT/origin.log" "$WORK/nginx-origin/error.log" 2>/dev/null)"
log "origin nginx up (pid $ORIGIN_PID): ${ORIGINS[*]} :80 HTTP/1.1, :81 h2c"

# ---------------------------------------------------------------- helpers ---
tree_ticks() { # utime+stime in clock ticks of PID and its children (nginx's workers)
	local p s sum=0
	for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
		s=$(<"/proc/$p/stat") 2>/dev/null || continue
		s=${s##*) }
		# shellcheck disable=SC2086
		set -- $s
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}
host_ticks() { # "busy steal total" of the whole machine, in clock ticks
	awk '$1=="cpu"{busy=$2+$3+$4+$7+$8; print busy, $9, busy+$5+$6+$9; exit}' /proc/stat
}
origin_counts() { # "accepted requests" of the origin (stub_status), less this reading itself
	ip netns exec $NS_B curl -s --max-time 2 "$STATUS_URL" 2>/dev/null | awk 'NR==3{print $1, $3; ok=1} END{if (!ok) print "na na"}'
}
xstats() { # xstats GATEWAY JQ_FILTER: a number from xdpnet's /stats, or na
	local v
	v=$(ip netns exec $NS_E curl -s --max-time 2 "http://${ADMIN[$1]}/stats" 2>/dev/null | jq -r "$2 // \"na\"" 2>/dev/null) || v=na
	echo "${v:-na}"
}
diff_or_na() { [[ $1 != na && $2 != na ]] && echo $(($2 - $1)) || echo na; }
to_ms() { # wrk/h2load durations "850.00us", "1.23ms", "1.02s" -> ms
	awk -v v="$1" 'BEGIN{
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else print "na" }'
}
per_req() { # per_req TICKS0 TICKS1 REQUESTS: CPU-µs per request
	awk -v tk="$CLK_TCK" -v a="$1" -v b="$2" -v r="$3" 'BEGIN{ if (a == "na" || b == "na" || r + 0 == 0) print "na"; else printf "%.1f", (b - a) / tk * 1e6 / r }'
}
h2load_field() { # h2load_field OUTPUT WORD: the number before "WORD," on its "requests:" line
	awk -v w="$2," '/^requests:/{for (j = 1; j < NF; j++) if ($(j+1) == w) {print $j; exit}}' <<<"$1"
}

start_gateway() { # start_gateway NAME LOGFILE: sets GW_PID (ip netns exec and env exec in place: the gateway's own PID)
	local g=$1 logf=$2
	case $g in
	xdp)
		gw_kernel_addrs off
		ip netns exec $NS_E env GOMAXPROCS=2 "$XDPNET" run -c "$WORK/xdpnet-xdp.yaml" -drain 3s >>"$logf" 2>&1 &
		;;
	kernel)
		gw_kernel_addrs on
		ip netns exec $NS_E env GOMAXPROCS=2 "$XDPNET" run -c "$WORK/xdpnet-kernel.yaml" -drain 3s >>"$logf" 2>&1 &
		;;
	haproxy)
		gw_kernel_addrs on
		ip netns exec $NS_E haproxy -db -f "$WORK/haproxy.cfg" >>"$logf" 2>&1 &
		;;
	nginx)
		gw_kernel_addrs on
		ip netns exec $NS_E nginx -p "$WORK/nginx-gw" -c "$WORK/nginx-gw.conf" -e "$WORK/nginx-gw/error.log" >>"$logf" 2>&1 &
		;;
	caddy | caddy-h2c)
		local cf=Caddyfile
		[[ $g == caddy-h2c ]] && cf=Caddyfile-h2c
		gw_kernel_addrs on
		ip netns exec $NS_E env GOMAXPROCS=2 HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config" \
			caddy run --config "$WORK/$cf" --adapter caddyfile >>"$logf" 2>&1 &
		;;
	esac
	GW_PID=$!
}

wait_answer() { # wait_answer CURL_ARGS...: "CODE BYTES" once 200 and SIZE bytes, within ~15 s
	local i chk=""
	for ((i = 0; i < 100; i++)); do
		kill -0 "$GW_PID" 2>/dev/null || break
		chk=$(ip netns exec $NS_C curl -s -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$@" 2>/dev/null || true)
		[[ $chk == "200 $SIZE" ]] && break
		sleep 0.15
	done
	echo "${chk:-none}"
}

# run_wrk GATEWAY ROUND POS CONNS: one wrk load, one line of raw-h1.tsv.
run_wrk() {
	local g=$1 round=$2 pos=$3 c=$4 wout t0 t1 o0 o1 x0o=na x0r=na x1o=na x1r=na rc=0
	local hb0 hs0 ht0 hb1 hs1 ht1
	wout=$OUT/wrk-r$round-$g-c$c.txt
	if [[ $g == xdp || $g == kernel ]]; then
		x0o=$(xstats "$g" .backend_connections_opened); x0r=$(xstats "$g" .backend_requests)
	fi
	o0=$(origin_counts)
	read -r hb0 hs0 ht0 < <(host_ticks)
	t0=$(tree_ticks "$GW_PID")
	start_profiles "$g" "r$round-$g-c$c"
	ip netns exec $NS_C timeout $LOAD_TIMEOUT wrk -t2 -c"$c" -d"${DUR}s" --latency "$URL" >"$wout" 2>&1 || rc=$?
	wait_profiles
	t1=$(tree_ticks "$GW_PID")
	read -r hb1 hs1 ht1 < <(host_ticks)
	o1=$(origin_counts)
	if [[ $g == xdp || $g == kernel ]]; then
		x1o=$(xstats "$g" .backend_connections_opened); x1r=$(xstats "$g" .backend_requests)
	fi
	local reqs rps p50 p99 non2xx sockerr oc or ore xo xr xre
	reqs=$(awk '/requests in/{print $1; exit}' "$wout")
	rps=$(awk '/^Requests\/sec:/{print $2; exit}' "$wout")
	p50=$(to_ms "$(awk '$1=="50%"{print $2; exit}' "$wout")")
	p99=$(to_ms "$(awk '$1=="99%"{print $2; exit}' "$wout")")
	non2xx=$(awk -F: '/Non-2xx or 3xx responses/{gsub(/ /, "", $2); print $2; exit}' "$wout")
	sockerr=$(awk '/Socket errors:/{gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' "$wout")
	reqs=${reqs:-0} rps=${rps:-0} non2xx=${non2xx:-0} sockerr=${sockerr:-0}
	[[ $rc == 0 ]] || log "  wrk exited $rc ($g c$c): $(tail -3 "$wout" | tr '\n' ' ')"
	# Origin deltas less the stub_status reading itself (one connection, one request).
	read -r oc or < <(awk -v a="$o0" -v b="$o1" 'BEGIN{split(a, x, " "); split(b, y, " ");
		if (x[1] == "na" || y[1] == "na") print "na na"; else print y[1] - x[1] - 1, y[2] - x[2] - 1}')
	ore=$(awk -v c="$oc" -v r="$or" 'BEGIN{ if (c == "na" || r + 0 <= 0) print "na"; else printf "%.5f", 1 - c / r }')
	xo=$(diff_or_na "$x0o" "$x1o") xr=$(diff_or_na "$x0r" "$x1r")
	xre=$(awk -v c="$xo" -v r="$xr" 'BEGIN{ if (c == "na" || r == "na" || r + 0 <= 0) print "na"; else printf "%.5f", 1 - c / r }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$pos" "$g" "$c" "$DUR" "$reqs" "$rps" \
		"$p50" "$p99" "$non2xx" "$sockerr" "$(awk -v tk="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b - a) / tk}')" \
		"$(per_req "$t0" "$t1" "$reqs")" "$(per_req "$hb0" "$hb1" "$reqs")" \
		"$(awk -v a="$hs0" -v b="$hs1" -v t0="$ht0" -v t1="$ht1" 'BEGIN{printf "%.1f", (t1 > t0) ? 100 * (b - a) / (t1 - t0) : 0}')" \
		"$oc" "$or" "$ore" "$xo/$xr" "$xre" >>"$OUT/raw-h1.tsv"
	log "  $g c$c: $rps req/s, p50 ${p50}ms p99 ${p99}ms, $reqs requests, non2xx $non2xx, socket errors $sockerr, CPU-µs/req $(per_req "$t0" "$t1" "$reqs"), origin conns/reqs $oc/$or, xdpnet backend opened/requests $xo/$xr"
}

# start_profiles GATEWAY NAME: with PPROF, xdpnet's CPU and allocation
# profiles over the next DUR seconds (delta profiles of the load; the CPU
# profile costs the gateway a few % of its CPU: compare profiled runs with
# profiled runs) into pprof-{profile,allocs}-NAME.pb.gz; wait_profiles
# waits for them.
PROFS=()
start_profiles() {
	PROFS=()
	[[ -n $PPROF && ($1 == xdp || $1 == kernel) ]] || return 0
	for p in profile allocs; do
		ip netns exec $NS_E curl -s --max-time $LOAD_TIMEOUT -o "$OUT/pprof-$p-$2.pb.gz" \
			"http://${ADMIN[$1]}/debug/pprof/$p?seconds=$DUR" &
		PROFS+=($!)
	done
}
wait_profiles() {
	for p in "${PROFS[@]}"; do wait "$p" || log "  pprof fetch failed"; done
	PROFS=()
}

# run_tls_keepalive GATEWAY ROUND POS: h2load over TLS with kept-alive connections.
run_tls_keepalive() {
	local g=$1 round=$2 pos=$3 out t0 t1 hb0 hs0 ht0 hb1 hs1 ht1 rc=0
	local f=$OUT/h2load-r$round-$g-keepalive.txt
	read -r hb0 hs0 ht0 < <(host_ticks)
	t0=$(tree_ticks "$GW_PID")
	start_profiles "$g" "r$round-$g-keepalive"
	ip netns exec $NS_C timeout $LOAD_TIMEOUT h2load -t"$H2LOAD_THREADS" -c"$TLS_CONNS" -m"$TLS_STREAMS" -D"$DUR" "$TLS_URL" >"$f" 2>&1 || rc=$?
	wait_profiles
	t1=$(tree_ticks "$GW_PID")
	read -r hb1 hs1 ht1 < <(host_ticks)
	out=$(<"$f")
	[[ $rc == 0 ]] || log "  h2load exited $rc ($g keep-alive): $(tail -3 "$f" | tr '\n' ' ')"
	local ok total rps mean tls
	ok=$(h2load_field "$out" succeeded) total=$(h2load_field "$out" done)
	ok=${ok:-0} total=${total:-0}
	rps=$(awk '/^finished in/{gsub(/,/, ""); print $4; exit}' <<<"$out")
	mean=$(to_ms "$(awk '/^time for request:/{print $6; exit}' <<<"$out")")
	tls=$(awk -F': ' '/^TLS Protocol:/{split($2, a, ","); print a[1]; exit}' <<<"$out")
	printf '%s\t%s\t%s\tkeepalive\t%s\t%s\t%s\tna\t%s\t%s\t%s\t%s\tna\tna\t%s\n' "$round" "$pos" "$g" "$ok" "$((total - ok))" "${rps:-0}" \
		"$mean" "$(per_req "$t0" "$t1" "$ok")" "$(per_req "$hb0" "$hb1" "$ok")" \
		"$(awk -v a="$hs0" -v b="$hs1" -v t0="$ht0" -v t1="$ht1" 'BEGIN{printf "%.1f", (t1 > t0) ? 100 * (b - a) / (t1 - t0) : 0}')" "${tls:-}" >>"$OUT/raw-tls.tsv"
	log "  $g https keep-alive: ${rps:-0} req/s, $ok ok, $((total - ok)) failed, mean ${mean}ms, CPU-µs/req $(per_req "$t0" "$t1" "$ok"), ${tls:-no TLS line}"
}

# run_tls_newconn GATEWAY ROUND POS: batches of h2load -c32 -n32 -m1 for DUR
# seconds: every request on a new connection, every handshake full (h2load
# keeps no session tickets; xdpnet's counters say full/resumed).
run_tls_newconn() {
	local g=$1 round=$2 pos=$3 out t0 t1 hb0 hs0 ht0 hb1 hs1 ht1 f0=na r0=na f1=na r1=na
	local f=$OUT/h2load-r$round-$g-newconn.txt ok=0 total=0 busy=0 batches=0 end tls="" n d
	: >"$f"
	if [[ $g == xdp || $g == kernel ]]; then
		f0=$(xstats "$g" "(.engine.frontends.https.tls_handshakes.full // 0)"); r0=$(xstats "$g" "(.engine.frontends.https.tls_handshakes.resumed // 0)")
	fi
	read -r hb0 hs0 ht0 < <(host_ticks)
	t0=$(tree_ticks "$GW_PID")
	end=$((SECONDS + DUR))
	start_profiles "$g" "r$round-$g-newconn"
	while ((batches == 0 || SECONDS < end)); do
		out=$(ip netns exec $NS_C timeout 20 h2load -c32 -n32 -m1 "$TLS_URL" 2>&1) || true
		batches=$((batches + 1))
		n=$(h2load_field "$out" succeeded) d=$(h2load_field "$out" total)
		ok=$((ok + ${n:-0})) total=$((total + ${d:-32}))
		# h2load's own time for the batch (process start-up left out).
		busy=$(awk -v b="$busy" -v o="$out" 'BEGIN{ if (match(o, /finished in [0-9.]+(ms|us|s)/)) { t = substr(o, RSTART + 12, RLENGTH - 12);
			if (t ~ /ms$/) t = t / 1000; else if (t ~ /us$/) t = t / 1e6; else t = t + 0; b += t } printf "%.6f", b }')
		[[ -n $tls ]] || tls=$(awk -F': ' '/^TLS Protocol:/{split($2, a, ","); print a[1]; exit}' <<<"$out")
		((batches <= 2)) && echo "$out" >>"$f"
	done
	t1=$(tree_ticks "$GW_PID")
	read -r hb1 hs1 ht1 < <(host_ticks)
	wait_profiles
	if [[ $g == xdp || $g == kernel ]]; then
		# Counted when a connection closes: give the last batch's closes a moment.
		sleep 0.3
		f1=$(xstats "$g" "(.engine.frontends.https.tls_handshakes.full // 0)"); r1=$(xstats "$g" "(.engine.frontends.https.tls_handshakes.resumed // 0)")
	fi
	local hs
	hs=$(awk -v n="$ok" -v b="$busy" 'BEGIN{ if (b > 0) printf "%.0f", n / b; else print "na" }')
	echo "batches $batches, succeeded $ok of $total, h2load busy ${busy}s" >>"$f"
	printf '%s\t%s\t%s\tnewconn\t%s\t%s\t%s\t%s\tna\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$pos" "$g" "$ok" "$((total - ok))" \
		"$(awk -v n="$ok" -v b="$busy" 'BEGIN{ if (b > 0) printf "%.0f", n / b; else print 0 }')" "$hs" \
		"$(per_req "$t0" "$t1" "$ok")" "$(per_req "$hb0" "$hb1" "$ok")" \
		"$(awk -v a="$hs0" -v b="$hs1" -v t0="$ht0" -v t1="$ht1" 'BEGIN{printf "%.1f", (t1 > t0) ? 100 * (b - a) / (t1 - t0) : 0}')" \
		"$(diff_or_na "$f0" "$f1")" "$(diff_or_na "$r0" "$r1")" "${tls:-}" >>"$OUT/raw-tls.tsv"
	log "  $g https new connections: $batches batches, $ok of $total ok, $hs handshakes/s, CPU-µs/(handshake + request) $(per_req "$t0" "$t1" "$ok"), xdpnet full/resumed $(diff_or_na "$f0" "$f1")/$(diff_or_na "$r0" "$r1")"
}

run_gateway() { # run_gateway NAME ROUND POS: both parts for one gateway start
	local g=$1 round=$2 pos=$3 logf=$OUT/gw-$1-r$2.log chk c h1=0 tls=0
	[[ " $GATEWAYS " == *" $g "* ]] && h1=1
	[[ " $TLS_GATEWAYS " == *" $g "* ]] && tls=1
	log "round $round #$pos: $g"
	start_gateway "$g" "$logf"
	if ((h1)); then
		chk=$(wait_answer "$URL")
	else
		chk=$(wait_answer --cacert "$WORK/tls/cert.pem" "$TLS_URL")
	fi
	echo -e "$round\t$g\t$chk" >>"$OUT/curl.tsv"
	if [[ $chk != "200 $SIZE" ]]; then
		log "  FAILED: $g does not answer with 200 and $SIZE bytes (got '$chk'); skipped this round. $(tail -3 "$logf" | tr '\n' ' ')"
		FAILED+=("r$round:$g")
		stop_pid "$GW_PID" 15
		GW_PID=""
		return 0
	fi
	log "  $g answers (pid $GW_PID, $(cat "/proc/$GW_PID/comm"), $(($( (ps -o pid= --ppid "$GW_PID" || true) | wc -l) + 1)) processes)"
	[[ $g == xdp ]] && log "  XDP attach: $(ip -n $NS_E link show $IF_EC | grep -o 'xdp[a-z]*' | head -1) on $IF_EC, $(ip -n $NS_E link show $IF_EB | grep -o 'xdp[a-z]*' | head -1) on $IF_EB"
	if ((h1)); then
		ip netns exec $NS_C timeout 10 wrk -t2 -c16 -d1s "$URL" >"$OUT/warmup-r$round-$g.txt" 2>&1 || true
		for c in $CONNS; do run_wrk "$g" "$round" "$pos" "$c"; done
	fi
	if ((tls)); then
		chk=$(wait_answer --cacert "$WORK/tls/cert.pem" "$TLS_URL")
		if [[ $chk != "200 $SIZE" ]]; then
			log "  FAILED: $g HTTPS with the generated certificate (curl --cacert): got '$chk'"
			FAILED+=("r$round:$g-https")
		else
			ip netns exec $NS_C timeout 10 h2load -c16 -m10 -D1 "$TLS_URL" >"$OUT/warmup-tls-r$round-$g.txt" 2>&1 || true
			run_tls_keepalive "$g" "$round" "$pos"
			run_tls_newconn "$g" "$round" "$pos"
		fi
	fi
	stop_pid "$GW_PID" 15
	GW_PID=""
}

# ------------------------------------------------------------------ rounds ---
printf 'round\tpos\tgateway\tconns\tdur_s\trequests\trps\tp50_ms\tp99_ms\tnon2xx\tsock_errs\tgw_cpu_s\tgw_cpu_us_per_req\thost_cpu_us_per_req\tsteal_pct\torigin_conns\torigin_reqs\torigin_reuse\txdpnet_opened_per_requests\txdpnet_reuse\n' >"$OUT/raw-h1.tsv"
printf 'round\tpos\tgateway\tshape\tsucceeded\tfailed\trps\thandshakes_per_s\tmean_req_ms\tgw_cpu_us_per_req\thost_cpu_us_per_req\tsteal_pct\txdpnet_full\txdpnet_resumed\ttls\n' >"$OUT/raw-tls.tsv"
ALL=()
for g in $GATEWAYS $TLS_GATEWAYS; do [[ " ${ALL[*]} " == *" $g "* ]] || ALL+=("$g"); done
FAILED=()
for ((r = 1; r <= ROUNDS; r++)); do
	n=${#ALL[@]}
	for ((k = 0; k < n; k++)); do
		run_gateway "${ALL[$(((r - 1 + k) % n))]}" "$r" $((k + 1)) # order rotated each round
	done
done

{
	echo "## bench/peers: xdpnet beside HAProxy, nginx and Caddy ($(date -u +%FT%TZ))"
	echo
	echo "ROUNDS=$ROUNDS, ${DUR}s per load, GET of $SIZE bytes from nginx on two origin addresses; $(nproc) CPUs shared by clients, gateway and origin; $(sed -n 's/^xdpnet: .*commit //p' "$OUT/env.txt")."
	echo "Gateway CPU-µs/req: utime+stime of the gateway's processes (nginx: master and workers) over the load / requests."
	echo "Host CPU-µs/req: the whole machine's busy time (incl. softirq, the clients, the origin, other tenants) / requests."
	echo "Backend reuse (origin) = 1 - connections the origin accepted / requests it served (stub_status), for every gateway."
	summarize "$OUT"
} | tee "$OUT/table.md"
log "done: $OUT/raw-h1.tsv, $OUT/raw-tls.tsv, $OUT/table.md"
if ((${#FAILED[@]})); then
	log "gateway runs that failed (not in the table): ${FAILED[*]}"
	exit 1
fi
