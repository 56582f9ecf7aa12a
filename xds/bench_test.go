package xds_test

import (
	"runtime"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds"
	"github.com/gatehouse/gatehouse/xds/translate"
	"github.com/gatehouse/gatehouse/xds/xdstest"
)

func bigConfig(b *testing.B, routes, clusters int) *config.Config {
	b.Helper()
	cfg, err := config.LoadBytes("big.yaml", []byte(xdstest.YAML(routes, clusters, 50, "127.0.0.1:0", 0)), config.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkBuild is the reload pipeline after config loading: translate
// 5,000 routes and 1,000 clusters, validate every resource (including the
// typed configs in Anys), hash, and build consistent snapshots. Target:
// under 500 ms.
func BenchmarkBuild(b *testing.B) {
	cfg := bigConfig(b, 5000, 1000)
	runtime.GC() // the loader's garbage is not the build's
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		if _, err := xds.Build(cfg); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkTranslate is the translation step alone.
func BenchmarkTranslate(b *testing.B) {
	cfg := bigConfig(b, 5000, 1000)
	runtime.GC() // the loader's garbage is not the build's
	b.ResetTimer()
	for b.Loop() {
		if _, err := translate.Translate(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad is what comes before: reading and validating the YAML
// (including the shadowed-route analysis), for scale.
func BenchmarkLoad(b *testing.B) {
	y := []byte(xdstest.YAML(5000, 1000, 50, "127.0.0.1:0", 0))
	b.ResetTimer()
	for b.Loop() {
		if _, err := config.LoadBytes("big.yaml", y, config.LoadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildAtScale is BenchmarkBuild at the scale of issue 16:
// 20,000 routes and 2,000 clusters. Target: under 500 ms.
func BenchmarkBuildAtScale(b *testing.B) {
	cfg := bigConfig(b, 20000, 2000)
	runtime.GC()
	b.ResetTimer()
	start := cpuTime()
	for b.Loop() {
		if _, err := xds.Build(cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}
