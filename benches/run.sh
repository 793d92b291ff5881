#!/usr/bin/env bash
# Throughput and memory benchmark of `api2csv sync mailerlite` against the embedded
# mock, with a curl baseline over the same pages. See benches/README.md.
#
#   benches/run.sh                 # sizes 20000 200000
#   benches/run.sh 5000 50000      # other sizes (subscribers in the mock account)
#   REPEAT=5 benches/run.sh        # repetitions per measurement (median wall time)
#
# Uses $CARGO_TARGET_DIR if set (default: target/), builds the release binary itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(20000 200000)
REPEAT=${REPEAT:-3}
PAGE=100 # max_records_per_page; the mock (like MailerLite) caps `limit` at 100
TARGET=${CARGO_TARGET_DIR:-target}
# BIN=path/to/api2csv measures another build (say, the last release) instead.
BIN=${BIN:-$TARGET/release/api2csv}

die() { echo "run.sh: $*" >&2; exit 1; }
for tool in cargo curl python3 /usr/bin/time awk; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
for n in "${SIZES[@]}"; do [[ $n =~ ^[0-9]+$ ]] || die "sizes are numbers of subscribers, got '$n'"; done

if [ "$BIN" = "$TARGET/release/api2csv" ]; then
    echo "building release binary ($BIN) ..." >&2
    cargo build --release --quiet
fi
[ -x "$BIN" ] || die "no binary at $BIN"

WORK=$(mktemp -d)
MOCK_PID=
stop_mock() {
    if [ -n "$MOCK_PID" ]; then
        kill "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
        MOCK_PID=
    fi
}
cleanup() { stop_mock; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts the mock with $1 subscribers in its own process; sets BASE_URL and API_KEY.
start_mock() {
    "$BIN" mock mailerlite --addr "127.0.0.1:${PORT:-0}" --records "$1" --seed 1 \
        >"$WORK/mock.out" 2>"$WORK/mock.err" &
    MOCK_PID=$!
    BASE_URL=
    for _ in $(seq 200); do
        BASE_URL=$(grep -o '"base_url":"[^"]*"' "$WORK/mock.out" | cut -d'"' -f4 || true)
        [ -n "$BASE_URL" ] && break
        kill -0 "$MOCK_PID" 2>/dev/null || { cat "$WORK/mock.err" >&2; die "the mock exited"; }
        sleep 0.05
    done
    [ -n "$BASE_URL" ] || die "the mock did not print its configuration"
    API_KEY=$(grep -o '"api_key":"[^"]*"' "$WORK/mock.out" | cut -d'"' -f4)
    printf '{"api_key": "%s", "base_url": "%s", "max_records_per_page": %d}\n' \
        "$API_KEY" "$BASE_URL" "$PAGE" >"$WORK/config.json"
}

now_ns() { date +%s%N; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }

# run_sync PARENT_DIR [--tables T]: one sync into a fresh directory under PARENT_DIR,
# or into $KEEP (not removed) when that is set. Sets WALL (s), RSS (KiB), ROWS,
# SUBROWS, PAGES, and READ (records read, written or not).
run_sync() {
    local parent=$1
    shift
    local out t0 t1
    out=${KEEP:-$(mktemp -d -p "$parent")}
    t0=$(now_ns)
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$BIN" sync mailerlite --config "$WORK/config.json" \
        --out "$out" "$@" >"$WORK/sync.out" 2>"$WORK/sync.err"; then
        cat "$WORK/sync.err" >&2
        rm -rf "$out"
        die "sync failed"
    fi
    t1=$(now_ns)
    [ -n "${KEEP:-}" ] || rm -rf "$out"
    WALL=$(calc "%.4f" "($t1 - $t0) / 1e9")
    RSS=$(awk -F': *' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    # Summary lines: table read new changed unchanged deleted pages [requests].
    ROWS=$(awk 'NF >= 7 && $2 ~ /^[0-9]+$/ {s += $3 + $4 + $6} END {print s + 0}' "$WORK/sync.out")
    PAGES=$(awk 'NF >= 7 && $2 ~ /^[0-9]+$/ {s += $7} END {print s + 0}' "$WORK/sync.out")
    SUBROWS=$(awk '$1 == "subscriber" && NF >= 7 {print $3 + $4 + $6}' "$WORK/sync.out")
    READ=$(awk '$1 == "subscriber" && NF >= 7 {print $2}' "$WORK/sync.out")
    # Requests per table, where the summary has them, and in all.
    REQS=$(awk 'NF == 8 && $2 ~ /^[0-9]+$/ {printf "%s %s, ", $1, $8} / requests \(/ {print "total " $1}' "$WORK/sync.out")
}

# measure LABEL PARENT_DIR [--tables T]: REPEAT syncs; median wall, max RSS.
measure() {
    local label=$1 parent=$2 walls=() rss=0
    shift 2
    for _ in $(seq "$REPEAT"); do
        run_sync "$parent" "$@"
        walls+=("$WALL")
        [ "$RSS" -gt "$rss" ] && rss=$RSS
    done
    local wall
    wall=$(printf '%s\n' "${walls[@]}" | median)
    R_WALL[$label]=$wall
    R_RSS[$label]=$rss
    R_ROWS[$label]=$ROWS
    R_SUB[$label]=$SUBROWS
    R_PAGES[$label]=$PAGES
    R_READ[$label]=$READ
    R_REQS[$label]=$REQS
    echo "  $label: walls ${walls[*]} s, peak RSS $rss KiB" >&2
}

# The subscriber listing's page URLs, collected in one keep-alive pass, as a curl config.
collect_urls() {
    python3 - "$BASE_URL" "$API_KEY" "$PAGE" "$WORK/urls.cfg" <<'EOF'
import http.client, json, sys, urllib.parse
base, key, limit, cfg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
auth = {"Authorization": "Bearer " + key}
cursor, pages, records = None, 0, 0
with open(cfg, "w") as f:
    f.write('header = "Authorization: Bearer %s"\n' % key)
    while True:
        q = "%s/subscribers?limit=%s" % (u.path, limit)
        if cursor:
            q += "&cursor=" + urllib.parse.quote(cursor, safe="")
        f.write('url = "http://%s%s"\noutput = "/dev/null"\n' % (u.netloc, q))
        conn.request("GET", q, headers=auth)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit("GET %s: %d" % (q, r.status))
        page = json.loads(body)
        pages += 1
        records += len(page["data"])
        cursor = page["meta"].get("next_cursor")
        if not cursor or not page["data"]:
            break
print(pages, records)
EOF
}

# REPEAT curl runs over the collected URLs, one invocation, one connection.
measure_curl() {
    local n=$1 walls=() t0 t1
    for _ in $(seq "$REPEAT"); do
        t0=$(now_ns)
        # --compressed: asks for gzip like api2csv does (ureq's gzip feature).
        curl -s --compressed -K "$WORK/urls.cfg" -w '%{http_code} %{num_connects} %{size_download}\n' >"$WORK/curl.out"
        t1=$(now_ns)
        walls+=("$(calc "%.4f" "($t1 - $t0) / 1e9")")
    done
    local ok conns bytes
    ok=$(awk '$1 == 200' "$WORK/curl.out" | wc -l)
    conns=$(awk '{s += $2} END {print s}' "$WORK/curl.out")
    bytes=$(awk '{s += $3} END {print s}' "$WORK/curl.out")
    [ "$ok" -eq "${C_PAGES[$n]}" ] || die "curl: $ok of ${C_PAGES[$n]} pages answered 200"
    C_WALL[$n]=$(printf '%s\n' "${walls[@]}" | median)
    C_CONNS[$n]=$conns
    C_BYTES[$n]=$bytes
    echo "  curl: walls ${walls[*]} s, $conns connection(s), $bytes body bytes" >&2
}

declare -A R_WALL R_RSS R_ROWS R_SUB R_PAGES R_READ R_REQS C_PAGES C_RECS C_WALL C_CONNS C_BYTES
SHM=
[ -d /dev/shm ] && [ -w /dev/shm ] && SHM=/dev/shm
DISK_TMP=${TMPDIR:-/tmp}

for n in "${SIZES[@]}"; do
    echo "== $n subscribers" >&2
    start_mock "$n"
    measure "$n/all" "$DISK_TMP"
    measure "$n/sub" "$DISK_TMP" --tables subscriber
    [ -n "$SHM" ] && measure "$n/shm" "$SHM" --tables subscriber
    # The everyday cron run: a second sync of an unchanged account reads every page
    # and appends nothing.
    KEEP=$(mktemp -d -p "$DISK_TMP")
    "$BIN" sync mailerlite --config "$WORK/config.json" --out "$KEEP" --tables subscriber >/dev/null
    measure "$n/inc" "$DISK_TMP" --tables subscriber
    rm -rf "$KEEP"
    unset KEEP
    collect_urls >"$WORK/collect.out" || die "collecting the subscriber page URLs failed"
    read -r C_PAGES[$n] C_RECS[$n] <"$WORK/collect.out"
    measure_curl "$n"
    stop_mock
done

# Durable-commit cost on the output directory's file system, the same calls per page
# as api2csv: CSV append + fdatasync, state temp file + fsync + rename + dir fsync.
FSYNC=$(python3 - "$WORK" <<'EOF'
import os, statistics, sys, time
d = os.path.join(sys.argv[1], "fsync"); os.mkdir(d)
page = b"x" * 40000  # about one 100-subscriber page of CSV
state = b"{" + b"s" * 2000 + b"}\n"
csv = os.open(os.path.join(d, "t.csv"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
def fdatasync_only():
    os.write(csv, page); os.fdatasync(csv)
def commit():
    os.write(csv, page); os.fdatasync(csv)
    tmp = os.path.join(d, "state.json.tmp")
    f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.write(f, state); os.fsync(f); os.close(f)
    os.rename(tmp, os.path.join(d, "state.json"))
    f = os.open(d, os.O_RDONLY); os.fsync(f); os.close(f)
out = []
for step in (fdatasync_only, commit):
    ms = []
    for _ in range(200):
        t = time.perf_counter(); step(); ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    out += [statistics.median(ms), ms[int(len(ms) * 0.9)]]
print(" ".join("%.2f" % v for v in out))
EOF
)
read -r FDATASYNC_MS FDATASYNC_P90 COMMIT_MS COMMIT_P90 <<<"$FSYNC"

# ---------------------------------------------------------------------------
echo
echo "api2csv sync mailerlite vs the embedded mock (release build, mock in its own process,"
echo "max_records_per_page $PAGE, median of $REPEAT runs, peak RSS = max over runs; $(nproc) CPUs)"
echo
printf '%-8s %-25s %6s %9s %17s %8s %9s %8s %9s\n' \
    subs run pages rows "subscriber rows" "wall s" "rows/s" "pages/s" "RSS KiB"
for n in "${SIZES[@]}"; do
    for kind in all sub shm inc; do
        k=$n/$kind
        [ -n "${R_WALL[$k]:-}" ] || continue
        case $kind in
            all) label="all tables" ;;
            sub) label="--tables subscriber" ;;
            shm) label="subscriber, out on tmpfs" ;;
            inc) label="subscriber, unchanged" ;;
        esac
        rows=${R_ROWS[$k]}
        [ "$kind" = inc ] && rows=${R_READ[$k]} # read, none written
        share=$(calc "%.0f" "100 * ${R_SUB[$k]} / ($rows > 0 ? $rows : 1)")
        printf '%-8s %-25s %6d %9d %10d (%3s%%) %8.3f %9.0f %8.0f %9d\n' "$n" "$label" \
            "${R_PAGES[$k]}" "$rows" "${R_SUB[$k]}" "$share" "${R_WALL[$k]}" \
            "$(calc "%.1f" "$rows / ${R_WALL[$k]}")" \
            "$(calc "%.1f" "${R_PAGES[$k]} / ${R_WALL[$k]}")" "${R_RSS[$k]}"
    done
done

echo
echo "requests per table, all tables (first sync):"
for n in "${SIZES[@]}"; do
    echo "  $n: ${R_REQS[$n/all]:-}"
done

echo
echo "curl baseline: the subscriber listing's pages, one curl process, one keep-alive connection, bodies to /dev/null"
echo
printf '%-8s %6s %9s %8s %8s %10s %11s %22s\n' subs pages records "wall s" "pages/s" "records/s" "MiB/s" "api2csv/curl (>= 0.5)"
for n in "${SIZES[@]}"; do
    cw=${C_WALL[$n]}
    crate=$(calc "%.1f" "${C_RECS[$n]} / $cw")
    arate=$(calc "%.1f" "${R_SUB[$n/sub]} / ${R_WALL[$n/sub]}")
    ratio=$(calc "%.2f" "$arate / $crate")
    verdict=$(awk "BEGIN {print ($ratio >= 0.5) ? \"ok\" : \"BELOW TARGET\"}")
    shm=
    [ -n "${R_WALL[$n/shm]:-}" ] && shm=" (tmpfs $(calc "%.2f" "${R_SUB[$n/shm]} / ${R_WALL[$n/shm]} / $crate"))"
    shm="$shm (unchanged $(calc "%.2f" "${R_READ[$n/inc]} / ${R_WALL[$n/inc]} / $crate"))"
    printf '%-8s %6d %9d %8.3f %8.0f %10.0f %11.1f %15s %s%s\n' "$n" "${C_PAGES[$n]}" "${C_RECS[$n]}" "$cw" \
        "$(calc "%.1f" "${C_PAGES[$n]} / $cw")" "$crate" "$(calc "%.1f" "${C_BYTES[$n]} / $cw / 1048576")" \
        "$ratio" "$verdict" "$shm"
    [ "${C_CONNS[$n]}" -le 1 ] || echo "  note: curl opened ${C_CONNS[$n]} connections for $n"
done

if [ ${#SIZES[@]} -ge 2 ]; then
    small=${SIZES[0]} large=${SIZES[${#SIZES[@]} - 1]}
    ratio=$(calc "%.2f" "${R_RSS[$large/all]} / ${R_RSS[$small/all]}")
    verdict=$(awk "BEGIN {print ($ratio <= 1.5) ? \"ok\" : \"ABOVE 1.5x\"}")
    echo
    echo "peak RSS, all tables: ${R_RSS[$large/all]} KiB at $large / ${R_RSS[$small/all]} KiB at $small = ${ratio}x (criterion <= 1.5x): $verdict"
fi

echo
echo "durable commit on $DISK_TMP (the output file system), median (p90) of 200:"
echo "  fdatasync of a 40 KB CSV append:                                          ${FDATASYNC_MS} ms (${FDATASYNC_P90} ms)"
echo "  full page commit (append+fdatasync, state temp+fsync, rename, dir fsync): ${COMMIT_MS} ms (${COMMIT_P90} ms)"
echo "  = at most $(calc "%.0f" "1000 / $COMMIT_MS") committed pages/s from the commits alone, however fast the API is."
