# Helpers shared by the benchmark scripts (bench.sh, bench-tls.sh, bench-threads.sh,
# topics-bench.sh), sourced by them; nothing here runs on its own.

# The middle of the numbers on stdin, one per line ("NA" if there are none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "NA" }'; }

# End the server whose pid is in SRV_PID (SIGTERM, SIGKILL after 5 s) and clear it.
SRV_PID=""
stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}

# Resident memory of process $1, in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# User plus system CPU seconds of process $1 (all its threads).
cpu_seconds() {
  awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); print (f[12] + f[13]) / t }' \
    "/proc/$1/stat"
}
