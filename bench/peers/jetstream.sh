#!/usr/bin/env bash
# Two roomlog nodes on one nats-server (R1, file storage), measured with `roomlog bench`:
# publishers on node A, subscribers on node B. The stores and both nodes run on CPU 0, the load
# generator on CPU 1, and every step starts on fresh servers.
#
#   bash bench/peers/jetstream.sh                    # builds roomlog and nats-server from this tree
#   ROOMLOG=/path/to/old/roomlog bash bench/peers/jetstream.sh   # another roomlog, side by side
#
# Environment: ROOMLOG (a roomlog binary), NATS_SERVER (a nats-server binary), RUNS (runs per
# step, default 2), STEPS (default "publish1 publish64 fanout500 fanout1000 fanout2000 resume").
# Prints one line per run: the step, then the figures `roomlog bench --json` gave. Loopback only.
#
# A step soakN is `roomlog bench soak --rate N` over the two nodes for SOAK_DURATION (default 1h),
# its samples (every 10 s, both nodes) on stderr:
#
#   STEPS=soak1000 RUNS=1 bash bench/peers/jetstream.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${ROOMLOG:-}" ]; then
	go build -o "$work/roomlog" ./cmd/roomlog
	ROOMLOG=$work/roomlog
fi
if [ -z "${NATS_SERVER:-}" ]; then
	go build -o "$work/nats-server" github.com/nats-io/nats-server/v2
	NATS_SERVER=$work/nats-server
fi
RUNS=${RUNS:-2}
STEPS=${STEPS:-publish1 publish64 fanout500 fanout1000 fanout2000 resume}
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

wait_http() {
	for _ in $(seq 100); do
		curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "jetstream.sh: $1 did not come up" >&2
	return 1
}

# start: a fresh nats-server and two roomlog nodes on it.
start() {
	rm -rf "$work/js" && mkdir -p "$work/js"
	taskset -c 0 "$NATS_SERVER" -a 127.0.0.1 -p 14222 -js -sd "$work/js" >"$work/nats.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
	for port in 17071 17072; do
		taskset -c 0 "$ROOMLOG" serve --addr 127.0.0.1:$port --nats nats://127.0.0.1:14222 --nats-replicas 1 \
			--jwt-secret "$secret" --publish-rate 0 --max-conns-per-user 0 --data "$work/dev-$port.db" \
			>"$work/node-$port.log" 2>&1 &
		pids+=($!)
		wait_http http://127.0.0.1:$port
	done
}

stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
}

servers=http://127.0.0.1:17071,http://127.0.0.1:17072
for step in $STEPS; do
	for run in $(seq "$RUNS"); do
		start
		case $step in
		publish*) args=(publish --in-flight "${step#publish}" --server http://127.0.0.1:17071) ;;
		fanout*) args=(fanout --rate "${step#fanout}" --server "$servers") ;;
		resume) args=(resume --clients 10 --missed 10000 --server "$servers") ;;
		soak*) args=(soak --rate "${step#soak}" --duration "${SOAK_DURATION:-1h}" --server "$servers") ;;
		*) echo "jetstream.sh: unknown step $step" >&2; exit 2 ;;
		esac
		out=$(taskset -c 1 "$ROOMLOG" bench "${args[@]}" --secret "$secret" --json | tr -d "\n\t")
		echo "$step run $run: $out"
		stop
	done
done
