#!/usr/bin/env bash
# Starts the servers the remote tier's tests need, on loopback at random
# free ports with their data in a temporary directory, runs the tests
# (tests/unit/run.sh counts them) and stops every server it started.
#   run.sh PROGRAM...
#   - a single redis-server           -> KVMM_TEST_REDIS=127.0.0.1:PORT
#   - a single valkey-server          -> KVMM_TEST_VALKEY (where installed)
#   - a Redis Cluster, 3 masters and 3 replicas, node-timeout 1000 ms
#                                     -> KVMM_TEST_CLUSTER=127.0.0.1:P1,...
# Without redis-server every test counts as skipped, with the reason.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	exec "$top/tests/common/skip-all.sh" remote \
		"redis-server or redis-cli not installed (scripts/install-deps.sh)" "$@"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvmm-remote.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port that is free, and whose cluster bus port (+10000) is free too.
used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
taken=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		case "$taken" in *" $p "* | *" $((p + 10000)) "*) continue ;; esac
		if ! grep -qx -e "$p" -e "$((p + 10000))" <<<"$used"; then
			taken="$taken$p $((p + 10000)) "
			echo "$p"
			return
		fi
	done
}

# start NAME BINARY PORT [ARGS...]: a server in $dir/NAME, in the foreground
# of a background job so that its pid is ours to kill.
start() {
	local name=$1 bin=$2 port=$3
	shift 3
	mkdir -p "$dir/$name"
	(cd "$dir/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --dir "$dir/$name" --logfile "$dir/$name/log" "$@") &
	pids+=($!)
	disown $! # the tests kill -9 a master: no "Killed" report from this shell
}

up() { # PORT: the server answers PING (5 s at most)
	for _ in $(seq 50); do
		[ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	return 1
}

rp=$(free_port)
start redis redis-server "$rp"
up "$rp" && export KVMM_TEST_REDIS=127.0.0.1:$rp || echo "remote: redis-server did not start"

if command -v valkey-server >/dev/null; then
	vp=$(free_port)
	start valkey valkey-server "$vp"
	up "$vp" && export KVMM_TEST_VALKEY=127.0.0.1:$vp || echo "remote: valkey-server did not start"
fi

cports=()
for i in 1 2 3 4 5 6; do
	p=$(free_port)
	cports+=("$p")
	start "node$i" redis-server "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
		--cluster-node-timeout 1000
done
ok=1
for p in "${cports[@]}"; do up "$p" || ok=0; done
if [ $ok = 1 ] && redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cports[@]}") \
	--cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
	# every node must see the whole cluster before the tests start
	for _ in $(seq 100); do
		n=0
		for p in "${cports[@]}"; do
			redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' &&
				n=$((n + 1))
		done
		[ $n = 6 ] && break
		sleep 0.1
	done
	# every node a seed: the tests kill masters, and a handle opened later
	# must still find a live one
	seeds=$(printf '127.0.0.1:%s,' "${cports[@]}")
	[ $n = 6 ] && export KVMM_TEST_CLUSTER=${seeds%,}
fi
[ -n "${KVMM_TEST_CLUSTER:-}" ] || { echo "remote: the cluster did not form"; cat "$dir/create.log"; }

"$top/tests/unit/run.sh" remote "$@"
