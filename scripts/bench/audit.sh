#!/usr/bin/env bash
# audit.sh: load scenario of the audit writer (make bench runs it).
#
# The audit log has no network API: its load is the stream of lines that
# authz, the app and xds hand to Record. This drives the real writer into
# a real file (in a temporary directory, removed by go test) as fast as it
# takes lines without dropping any, and compares it with the ceiling
# measured in the same run: the same bytes written in the same batches to
# the same kind of file, with no encoding, chaining or hashing. It also
# reports what a decision pays to audit: Record when the writer keeps up
# (enqueue), in a tight loop from one goroutine and from every core while
# the writer drains (serial, parallel), and when the buffer is full.
#
# BENCHTIME (default 2s) and COUNT (default 3, the median is reported).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=$(go test -run '^$' -bench '^Benchmark(WriterThroughput|WriterCeiling|Record|RecordEnqueue|RecordFull)$' \
	-benchtime "${BENCHTIME:-2s}" -count "${COUNT:-3}" ./internal/audit/)
echo "$out" | grep -E '^Benchmark'

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print 0} else {print a[int((NR+1)/2)]}}'; }
metric() { # benchmark-name-prefix unit
	echo "$out" | awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" {for (i=2;i<=NF;i++) if ($(i+1)==u) print $i}' | median
}
sha=$(metric 'BenchmarkWriterThroughput/sha256' 'lines/s')
hmac=$(metric 'BenchmarkWriterThroughput/hmac' 'lines/s')
ceil=$(metric 'BenchmarkWriterCeiling' 'lines/s')
rec=$(metric 'BenchmarkRecord/serial' 'ns/op')
recp=$(metric 'BenchmarkRecord/parallel' 'ns/op')
full=$(metric 'BenchmarkRecordFull' 'ns/op')
enq=$(metric 'BenchmarkRecordEnqueue' 'ns/op')
awk -v s="$sha" -v h="$hmac" -v c="$ceil" -v r="$rec" -v rp="$recp" -v f="$full" -v q="$enq" 'BEGIN {
	if (c <= 0) { print "audit: no ceiling figure" > "/dev/stderr"; exit 1 }
	printf "RESULT audit writer_sha256=%.0f lines/s (%.2fx ceiling) writer_hmac=%.0f lines/s (%.2fx ceiling) ceiling=%.0f lines/s record_enqueue=%.0f ns/op record_serial=%.0f ns/op record_parallel=%.0f ns/op record_full=%.0f ns/op\n", s, s/c, h, h/c, c, q, r, rp, f
}'
