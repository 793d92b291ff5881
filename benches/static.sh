#!/usr/bin/env bash
# The speed limit of a MailerLite sync: api2csv against curl over the same static pages.
#
# usage: benches/static.sh N BIN     (from the project root; a copy of the shared peer
#        benchmark, with its page generator and nginx template beside it)
#   N    subscribers (pages of 100, shaped as /subscribers?include=groups answers: every
#        subscriber carries its group objects; ~1.4 KB of JSON per subscriber)
#   BIN  the api2csv binary to measure, e.g. target/release/api2csv
# env: RUNS=3 (round-robin, medians shown), PORT=18080, OUT_FS=/tmp (set OUT_FS=/dev/shm
#      for tmpfs), TMPDIR (where the pages are cached).
# Needs nginx (apt-get install -y nginx), curl, python3, GNU time (apt-get install -y time).
#
# nginx serves pre-rendered pages (precompressed .gz next to each) with one worker, so the
# server costs almost nothing and curl over the same URLs is the network + gzip limit.
# curl-gzip fetches every page with --compressed, as api2csv does; the ratio
# curl-gzip wall / api2csv wall is the figure to raise (1.0 = as fast as fetching alone).
# "unchanged" is a second sync into the same directory (every page read, nothing new):
# the everyday cron run.
set -uo pipefail

N=${1:?usage: static.sh N BIN}
BIN=$(readlink -f "${2:?usage: static.sh N BIN}")
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${PORT:-18080}
RUNS=${RUNS:-3}
OUT_FS=${OUT_FS:-${TMPDIR:-/tmp}}
for t in nginx curl python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "static.sh: needs $t" >&2; exit 1; }
done

DATA=$(python3 "$HERE/gen_pages.py" "$N" --port "$PORT") || exit 1
CURLCFG="$DATA/curl.cfg"
[ -s "$CURLCFG" ] || sed -e "s#^#url = \"http://127.0.0.1:$PORT#" -e 's#$#"\noutput = "/dev/null"#' \
  "$DATA/urls.txt" > "$CURLCFG"

NGX=$(mktemp -d)
RUN=$(mktemp -d "$OUT_FS/api2csv-bench-run.XXXXXX")
sed -e "s#@PREFIX@#$NGX#g" -e "s#@DATA@#$DATA#g" -e "s#@PORT@#$PORT#g" "$HERE/nginx.conf.tmpl" > "$NGX/nginx.conf"
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then echo "static.sh: port $PORT is taken (set PORT)" >&2; exit 1; fi
nginx -p "$NGX" -c "$NGX/nginx.conf" > "$NGX/stdout" 2>&1 &
NGX_PID=$!
cleanup() { kill "$NGX_PID" 2>/dev/null; wait "$NGX_PID" 2>/dev/null; rm -rf "$NGX" "$RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/fields" 2>/dev/null && break
  sleep 0.1
done
curl -s -K "$CURLCFG" >/dev/null; curl -s --compressed -K "$CURLCFG" >/dev/null   # warm the cache
printf '{"api_key":"x","base_url":"http://127.0.0.1:%s/api"}\n' "$PORT" > "$RUN/config.json"

# one timed run: prints "wall user sys maxrss_kb"
timed() {
  local t0 t1; t0=$(date +%s%N)
  /usr/bin/time -f "%U %S %M" -o "$RUN/time" "$@" >/dev/null 2>"$RUN/stderr" || { echo "failed: $* ($(tail -n 1 "$RUN/stderr"))" >&2; return 1; }
  t1=$(date +%s%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}') $(cat "$RUN/time")"
}
declare -A W
for k in $(seq "$RUNS"); do
  W[curl]+="$(timed curl -s -K "$CURLCFG")"$'\n'
  W[curl-gzip]+="$(timed curl -s --compressed -K "$CURLCFG")"$'\n'
  rm -rf "$RUN/out"
  W[api2csv]+="$(timed "$BIN" sync mailerlite --config "$RUN/config.json" --out "$RUN/out" -q)"$'\n'
  W[unchanged]+="$(timed "$BIN" sync mailerlite --config "$RUN/config.json" --out "$RUN/out" -q)"$'\n'
done
rows=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline="", encoding="utf-8-sig"))) - 1)' "$RUN/out/subscriber.csv" 2>/dev/null)

median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "N=$N subscribers, $(wc -l < "$DATA/urls.txt") pages, $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f MB JSON, %.1f MB gzip" % (d["json_bytes"] / 1e6, d["gzip_bytes"] / 1e6))' "$DATA/DONE"), output on $OUT_FS, medians of $RUNS"
printf '| %-9s | %7s | %9s | %9s | %7s |\n' run "wall s" "CPU s" "RSS MiB" "records/s"
for p in curl curl-gzip api2csv unchanged; do
  w=$(echo -n "${W[$p]}" | awk '{print $1}' | median)
  c=$(echo -n "${W[$p]}" | awk '{print $2 + $3}' | median)
  r=$(echo -n "${W[$p]}" | awk '{print $4 / 1024}' | sort -n | tail -n 1)
  printf '| %-9s | %7.3f | %9.2f | %9.0f | %9.0f |\n' "$p" "$w" "$c" "$r" "$(awk -v n="$N" -v w="$w" 'BEGIN{print n / w}')"
  eval "wall_${p//-/_}=$w"
done
echo "api2csv wrote $rows subscriber rows; curl-gzip wall / api2csv wall = $(awk -v a="$wall_curl_gzip" -v b="$wall_api2csv" 'BEGIN{printf "%.2f", a / b}')"
