# Sourced by the benchmarks that time VMs of the demo image (bench/boot.sh,
# bench/free-pages.sh): the CLI, a state dir of their own unless
# HYPER_STATE_DIR is set (removed on exit, with any VM left in it), the demo
# image built offline, tools and guest bundle set up, the accelerator
# decided once, and the helpers they share.
hyper() { node dist/cli/index.js "$@"; }
bench_own_state=
if [ -z "${HYPER_STATE_DIR:-}" ]; then
  HYPER_STATE_DIR=$(mktemp -d /tmp/hyper-bench-XXXX)
  bench_own_state=$HYPER_STATE_DIR
fi
export HYPER_STATE_DIR
image=${HYPER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hyper}/demo-image
[ -f "$image/index.json" ] || bash test/fixtures/build-busybox-image.sh "$image" > /dev/null
hyper setup > /dev/null 2>&1
accel=$(hyper setup 2> /dev/null | awk '/^accel/ { print $2 }')
export HYPER_ACCEL=$accel

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
wait_http() { until curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2> /dev/null; do sleep 0.01; done; }
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

# Removes every VM in the state dir, and the dir when it is the benchmark's own.
bench_cleanup() {
  local name
  for name in $(hyper ps --json | node -e 'for (const r of JSON.parse(require("fs").readFileSync(0))) console.log(r.name)'); do
    hyper rm -f "$name" > /dev/null
  done
  [ -z "$bench_own_state" ] || rm -rf "$bench_own_state"
}
