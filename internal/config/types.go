package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string ("250ms",
// "1m30s"). Bare numbers are refused: "timeout: 5" is ambiguous.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders the duration the way it is written in config.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 5s or 250ms")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fmt.Errorf("%q has no unit; write it as a duration such as %ss or %sms", n.Value, n.Value, n.Value)
		}
		return fmt.Errorf("%q is not a duration; use a number with a unit (ns, us, ms, s, m, h), e.g. 5s", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative; durations must be zero or more", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML renders the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a size in bytes, written as a plain number or with a unit:
// B, KB/KiB, MB/MiB, GB/GiB (KB = 1000, KiB = 1024).
type ByteSize int64

// UnmarshalYAML parses a size such as 4MiB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 64KiB or 4MiB")
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML renders the size in the largest binary unit that divides it.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String renders the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	v := int64(b)
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(v, 10)
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// ParseByteSize parses "4MiB", "64KB", "512" into bytes.
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size; use a whole number of bytes or a unit: 512, 64KiB, 4MiB, 1GiB", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// Addresses is one host:port or a list of them. Written as one string, it
// is a list of one.
type Addresses []string

// UnmarshalYAML accepts a string or a list of strings.
func (a *Addresses) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = Addresses{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Addresses, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("expected host:port strings")
			}
			out = append(out, c.Value)
		}
		*a = out
		return nil
	}
	return fmt.Errorf("expected host:port or a list of host:port")
}

// MarshalYAML writes one address as a string, several as a list.
func (a Addresses) MarshalYAML() (any, error) {
	if len(a) == 1 {
		return a[0], nil
	}
	return []string(a), nil
}
