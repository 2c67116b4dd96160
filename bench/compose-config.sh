#!/usr/bin/env bash
# `hyper config` on a 50-service compose file: the time to read, validate
# against the Compose Specification's schema, answer every key and plan,
# against `hyper` doing nothing (`hyper --help`: Node's start and the
# bundle's load) in the same run, and against a 1-service file. Medians over
# N runs, the variants alternating.
#
# Usage: bench/compose-config.sh [RUNS]   (default 9). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9}
work=$(mktemp -d /tmp/hyper-config-bench-XXXX)
trap 'rm -rf "$work"' EXIT

# A service as real files write them: most of the keys a web app, a worker or a database has.
service() {
  local i=$1 dependency=$2
  cat << YAML
  svc$i:
    image: registry.example/team/app$i:1.$i
    environment:
      PORT: "80$((i % 10))"
      DATABASE_URL: postgres://db:5432/app$i
    env_file:
      - path: ./missing-$i.env
        required: false
    ports: ["$((20000 + i)):80"]
    volumes: ["data$i:/var/lib/app", "./config:/etc/app:ro"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/ || exit 1"]
      interval: 5s
      retries: 5
    restart: on-failure:3
    labels: { team: ci, index: "$i" }
    ulimits: { nofile: { soft: 4096, hard: 8192 } }
    sysctls: { net.core.somaxconn: 1024 }
    logging: { driver: json-file, options: { max-size: 10m } }
    deploy: { resources: { limits: { memory: 256m, cpus: "1" } } }
$dependency
YAML
}
{
  echo 'services:'
  for i in $(seq 1 50); do
    if [ "$i" -gt 1 ]; then service "$i" "    depends_on: { svc$((i - 1)): { condition: service_healthy } }"; else service "$i" ''; fi
  done
  echo 'volumes:'
  for i in $(seq 1 50); do echo "  data$i:"; done
} > "$work/compose-50.yml"
{
  echo 'services:'
  service 1 ''
  printf 'volumes:\n  data1:\n'
} > "$work/compose-1.yml"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
time_ms() {
  local start
  start=$(now_ms)
  "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  echo $(($(now_ms) - start))
}

declare -A times=([help]='' [one]='' [fifty]='')
for _ in $(seq 1 "$runs"); do
  times[help]+="$(time_ms node dist/cli/index.js --help) "
  times[one]+="$(time_ms node dist/cli/index.js config -f "$work/compose-1.yml") "
  times[fifty]+="$(time_ms node dist/cli/index.js config -f "$work/compose-50.yml") "
done
med() { tr ' ' '\n' <<< "${times[$1]}" | grep . | median; }
help=$(med help)
one=$(med one)
fifty=$(med fifty)
echo "hyper config, medians of $runs runs ($(wc -l < "$work/compose-50.yml") lines in the 50-service file):"
printf '  %-34s %6s ms\n' 'hyper --help (baseline)' "$help"
printf '  %-34s %6s ms  (%s ms over the baseline)\n' 'hyper config, 1 service' "$one" "$((one - help))"
printf '  %-34s %6s ms  (%s ms over the baseline; %.2fx the 1-service file)\n' 'hyper config, 50 services' "$fifty" \
  "$((fifty - help))" "$(awk -v a="$fifty" -v b="$one" 'BEGIN { print a / b }')"
