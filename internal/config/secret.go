package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Secret is a reference to a secret value: "env:NAME" reads an environment
// variable, "file:PATH" reads a file (one trailing newline is dropped, as
// written by most secret mounts). A literal secret in config is refused, so
// that config files can be reviewed, committed and printed by /config
// without leaking anything. The resolved value never leaves this type
// through String, MarshalYAML or a log call.
type Secret struct {
	ref   string
	value []byte
}

// Ref returns the reference as written ("env:REDIS_PASSWORD").
func (s Secret) Ref() string { return s.ref }

// IsSet reports whether a reference was configured.
func (s Secret) IsSet() bool { return s.ref != "" }

// Value returns the resolved secret. It is empty until the loader resolved
// the reference.
func (s Secret) Value() []byte { return s.value }

// IsZero lets `omitempty` drop an unset secret from rendered config.
func (s Secret) IsZero() bool { return s.ref == "" }

// String is redacted on purpose; use Value for the secret itself.
func (s Secret) String() string { return s.ref }

// LogValue keeps the secret out of slog output: it implements
// slog.LogValuer, so handlers log the reference only.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.ref) }

// GoString keeps the secret out of %#v as well.
func (s Secret) GoString() string { return "config.Secret(" + strconv.Quote(s.ref) + ")" }

// MarshalYAML writes the reference, never the value.
func (s Secret) MarshalYAML() (any, error) { return s.ref, nil }

// UnmarshalYAML accepts only env: and file: references.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a secret reference, env:NAME or file:PATH")
	}
	ref := strings.TrimSpace(n.Value)
	if ref == "" {
		*s = Secret{} // written as "" means not set
		return nil
	}
	if err := checkSecretRef(ref); err != nil {
		return err
	}
	s.ref = ref
	return nil
}

func checkSecretRef(ref string) error {
	kind, arg, ok := strings.Cut(ref, ":")
	if !ok || (kind != "env" && kind != "file") {
		// Do not echo the value: it may be the secret itself.
		return fmt.Errorf("a literal secret is not allowed in config; write env:NAME or file:PATH")
	}
	if arg == "" {
		return fmt.Errorf("%s: reference has no %s", kind, map[string]string{"env": "variable name", "file": "path"}[kind])
	}
	return nil
}

// NewSecretRef builds an unresolved secret reference, for tests and for
// config built in code. It returns an error for anything but env:/file:.
func NewSecretRef(ref string) (Secret, error) {
	if err := checkSecretRef(ref); err != nil {
		return Secret{}, err
	}
	return Secret{ref: ref}, nil
}

// resolve reads the referenced value. baseDir anchors relative file: paths
// at the directory of the config file that holds the reference.
func (s *Secret) resolve(baseDir string, env func(string) (string, bool)) error {
	if s.ref == "" {
		return nil
	}
	kind, arg, _ := strings.Cut(s.ref, ":")
	switch kind {
	case "env":
		v, ok := env(arg)
		if !ok {
			return fmt.Errorf("environment variable %s is not set", arg)
		}
		if v == "" {
			return fmt.Errorf("environment variable %s is empty", arg)
		}
		s.value = []byte(v)
	case "file":
		p := resolvePath(baseDir, arg)
		b, err := readSecretFile(p)
		if err != nil {
			return fmt.Errorf("cannot read secret file: %v", unwrapPathError(err))
		}
		b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
		if len(b) == 0 {
			return fmt.Errorf("secret file %s is empty", p)
		}
		s.value = b
	}
	return nil
}

// MaxSecretSize bounds a file: secret. Keys and passwords are small; a
// larger file is a wrong path, not a secret.
const MaxSecretSize = 64 << 10

// readSecretFile reads a regular file of at most MaxSecretSize bytes.
// file:/dev/zero or a FIFO would otherwise make the load read (or wait)
// forever, and every reload with it.
func readSecretFile(p string) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSecretSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, MaxSecretSize)
	}
	return b, nil
}
