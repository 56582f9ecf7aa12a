package config_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/xdstest"
)

// BenchmarkLoadLarge loads a config of 5,000 routes and 1,000 clusters:
// the cost every reload of a large route table pays before translation.
func BenchmarkLoadLarge(b *testing.B) {
	y := []byte(xdstest.YAML(5000, 1000, 50, "127.0.0.1:0", 0))
	b.SetBytes(int64(len(y)))
	for b.Loop() {
		if _, err := config.LoadBytes("big.yaml", y, config.LoadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
