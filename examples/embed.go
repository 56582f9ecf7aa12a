// Package examples holds runnable gatehouse configs. The default config,
// gatehouse.yaml, is embedded in the binary: `gatehouse serve` without
// --config serves it, so it must not refer to other files.
package examples

import _ "embed"

// Default is examples/gatehouse.yaml, the config `make run` serves.
//
//go:embed gatehouse.yaml
var Default []byte

// DefaultName names the embedded config in messages.
const DefaultName = "examples/gatehouse.yaml (embedded)"
