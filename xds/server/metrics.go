package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	streams       *prometheus.GaugeVec
	responses     *prometheus.CounterVec
	resourcesSent *prometheus.CounterVec
	acks          *prometheus.CounterVec
	nacks         *prometheus.CounterVec
	pushes        prometheus.Counter
	version       *prometheus.GaugeVec
	nodeAcked     *prometheus.GaugeVec
	nodeNacked    *prometheus.GaugeVec
	build         prometheus.Histogram
	deferred      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_xds_connected_streams",
			Help: "Open ADS streams by protocol (sotw or delta).",
		}, []string{"protocol"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_responses_total",
			Help: "Discovery responses sent, by resource type and protocol.",
		}, []string{"type", "protocol"}),
		resourcesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_resources_sent_total",
			Help: "Resources sent in discovery responses, by type and protocol (Delta sends only what changed).",
		}, []string{"type", "protocol"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_acks_total",
			Help: "Responses a node accepted, by resource type.",
		}, []string{"type"}),
		// NACKs are counted apart from ACKs because a NACK means a node
		// runs an older config than the one gatehouse serves: the alert
		// an operator needs, with the detail in /xds/nodes and the audit.
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_nacks_total",
			Help: "Responses a node rejected (NACK), by resource type.",
		}, []string{"type"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_xds_snapshot_pushes_total",
			Help: "Snapshots handed to connected nodes (a node gets one when its group's content changed).",
		}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_xds_config_version_info",
			Help: "The content version of the served xDS resources; the value is always 1.",
		}, []string{"version"}),
		nodeAcked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_xds_node_acked_version_info",
			Help: "The version each connected node last accepted, by type; the value is always 1.",
		}, []string{"node", "group", "type", "version"}),
		nodeNacked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_xds_node_nacked",
			Help: "1 while a connected node's last response of a type was rejected; details in /xds/nodes.",
		}, []string{"node", "type"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_xds_build_seconds",
			Help:    "Time to translate a config and build its snapshots.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5},
		}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_xds_large_responses_deferred_total",
			Help: "Large responses (a first sync of a large table) held back until others in flight were ACKed, to bound the memory of many nodes syncing at once.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.responses, m.resourcesSent, m.acks, m.nacks, m.pushes, m.version, m.nodeAcked, m.nodeNacked, m.build, m.deferred} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveBuild records how long a translate + snapshot build took.
func (s *Server) ObserveBuild(d time.Duration) { s.m.build.Observe(d.Seconds()) }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
