#!/usr/bin/env bash
# make bench-remote: a redis-server of its own on a random loopback port
# (no persistence, data in a temporary directory), redis-benchmark's SET and
# GET at each value size, then kvmm-bench-remote against the same server.
#   remote.sh BENCH [SERVER_BINARY]   (env: SIZES_KIB, CONNS, MIB)
set -u
bench=$1 srv=${2:-redis-server}
sizes=${SIZES_KIB:-64,256,1024,2048,4096,8192,32768}
conns=${CONNS:-4} mib=${MIB:-512}
dir=$(mktemp -d "${TMPDIR:-/tmp}/kvmm-bench-remote.XXXXXX")
port=$((20000 + RANDOM % 30000))
"$srv" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/log" --proto-max-bulk-len 1gb &
pid=$!
trap 'kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
	[ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
	sleep 0.1
done
echo "server: $("$srv" --version | head -n1)"
echo "machine: $(nproc) cores; load before: $(uptime | sed 's/.*load average/load average/')"
echo "redis-benchmark: -c $conns -P 1, $mib MiB per size, payload GB/s; set and get on its one"
echo "key (each SET replaces it), set_distinct on random keys (new memory, as kvmm's SET NX)"
echo "value_KiB  requests  set_GB/s  get_GB/s  set_distinct_GB/s"
IFS=, read -ra ks <<<"$sizes"
rps() { awk -F'"' -v t="$1" '$2 == t { print $4 }'; }
for k in "${ks[@]}"; do
	n=$((mib * 1024 / k)); [ $n -ge 4 ] || n=4
	redis-cli -p "$port" flushall >/dev/null
	out=$(redis-benchmark -p "$port" -c "$conns" -P 1 -n "$n" -d $((k * 1024)) -t set,get \
		--csv 2>/dev/null)
	set_rps=$(rps SET <<<"$out") get_rps=$(rps GET <<<"$out")
	redis-cli -p "$port" flushall >/dev/null
	out=$(redis-benchmark -p "$port" -c "$conns" -P 1 -n "$n" -d $((k * 1024)) -t set \
		-r 1000000000 --csv 2>/dev/null)
	dist_rps=$(rps SET <<<"$out")
	awk -v k="$k" -v n="$n" -v s="$set_rps" -v g="$get_rps" -v d="$dist_rps" 'BEGIN {
		b = k * 1024 / 1e9
		printf "%9d  %8d  %8.2f  %8.2f  %17.2f\n", k, n, s * b, g * b, d * b }'
done
redis-cli -p "$port" flushall >/dev/null
echo
"$bench" --servers 127.0.0.1:$port --conns "$conns" --mib "$mib" --sizes "$sizes"
echo "load after: $(uptime | sed 's/.*load average/load average/')"
