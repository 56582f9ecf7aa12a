package audit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the audit writer's collectors. Sinks are labelled "file"
// and "stdout": each carries its own chain and can fail on its own.
type metrics struct {
	lines       *prometheus.CounterVec
	dropped     prometheus.Counter
	writeErrors *prometheus.CounterVec
	lostLines   *prometheus.CounterVec
	lastSeq     *prometheus.GaugeVec
	rotations   prometheus.Counter
	fsync       prometheus.Histogram
	buffered    prometheus.GaugeFunc
	capacity    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, buffered func() float64) (*metrics, error) {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_audit_lines_total",
			Help: "Audit lines written, by sink.",
		}, []string{"sink"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_dropped_total",
			Help: "Audit events dropped because the buffer was full (recorded as a gap in the next line), or recorded after close.",
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_audit_write_errors_total",
			Help: "Failed operations on an audit sink, by sink and operation (write, sync, rotate, close).",
		}, []string{"sink", "op"}),
		lostLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_audit_lost_lines_total",
			Help: "Audit lines a write error kept out of a sink (recorded as a gap in its next line).",
		}, []string{"sink"}),
		lastSeq: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_audit_last_seq",
			Help: "Sequence number of the last line written to a sink: an outside record of how long the chain is, to detect a removed tail.",
		}, []string{"sink"}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_rotations_total",
			Help: "Audit file rotations.",
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_audit_fsync_seconds",
			Help:    "Time taken by fsync of the audit file.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_audit_buffer_events",
			Help: "Audit events waiting in the buffer.",
		}, buffered),
		capacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_audit_buffer_capacity",
			Help: "Size of the audit buffer (audit.bufferSize).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lines, m.dropped, m.writeErrors, m.lostLines, m.lastSeq, m.rotations, m.fsync, m.buffered, m.capacity} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("audit: register metrics: %w", err)
		}
	}
	return m, nil
}
