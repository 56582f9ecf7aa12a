package config

import (
	"errors"
	"fmt"
	"os"
)

// Audit configures the audit log: one hash-chained JSON line per authz
// decision, webhook verification, config change and xDS NACK. See
// docs/audit.md for the line format and how to verify it.
type Audit struct {
	// File is the audit log file; empty means no file sink. It is rotated
	// at MaxSize; the hash chain continues across rotated files and across
	// restarts (the writer reads the last line of the file at start).
	File OutputPath `yaml:"file,omitempty"`
	// Stdout writes audit lines to standard output (logs go to standard
	// error, so the two streams stay apart). When not written, it is on
	// when File is empty (so that no decision goes unrecorded) and off when
	// File is set (one chain, in the file). Standard output carries its own
	// chain, which starts anew at every start.
	Stdout bool `yaml:"stdout" default:"true"`
	// BufferSize bounds the lines waiting to be written. When it is full
	// a line is dropped (never blocking a decision), the loss is counted
	// and the next written line records the gap.
	BufferSize int `yaml:"bufferSize" default:"8192"`
	// MaxSize rotates the file when it would grow past this size.
	MaxSize ByteSize `yaml:"maxSize" default:"100MiB"`
	// MaxBackups is how many rotated files to keep (0 = keep all).
	MaxBackups int `yaml:"maxBackups" default:"10"`
	// ChainKey, when set, makes the chain an HMAC-SHA256 chain keyed with
	// this secret (at least 32 bytes): without the key nobody can
	// recompute the hashes of a changed log. `gatehouse audit verify --key`
	// takes the same reference.
	ChainKey Secret `yaml:"chainKey,omitempty"`
	// Sync is when the file is flushed to stable storage (fsync): always
	// (after every write; lines that arrive together share one), interval
	// (every SyncInterval while lines are written) or never (at rotation
	// and close only; the OS decides otherwise).
	Sync AuditSync `yaml:"sync" default:"interval"`
	// SyncInterval is the fsync period of sync: interval: what a power
	// loss may take from the file at most.
	SyncInterval Duration `yaml:"syncInterval" default:"1s"`
}

// AuditSync is the fsync policy of the audit file.
type AuditSync string

// Audit fsync policies.
const (
	AuditSyncAlways   AuditSync = "always"
	AuditSyncInterval AuditSync = "interval"
	AuditSyncNever    AuditSync = "never"
)

// EnumValues implements Enum.
func (AuditSync) EnumValues() []string { return []string{"always", "interval", "never"} }

// EnumNoun implements Enum.
func (AuditSync) EnumNoun() string { return "an fsync policy" }

// MinAuditKeyLen is the shortest accepted audit chain key: an HMAC-SHA256
// key shorter than the hash adds no strength and is easy to guess.
const MinAuditKeyLen = 32

func (a *Audit) validate(p Path, errs *Errors) {
	if a.File == "" && !a.Stdout {
		errs.Add(p, "has no sink: set file, or stdout: true, so that no decision goes unrecorded")
	}
	if a.BufferSize < 1 {
		errs.Add(p.Field("bufferSize"), "must be at least 1")
	}
	if a.MaxSize < 4096 {
		errs.Add(p.Field("maxSize"), "%s is too small; use at least 4KiB", a.MaxSize)
	}
	if a.MaxBackups < 0 {
		errs.Add(p.Field("maxBackups"), "must be 0 (keep all) or more")
	}
	if n := len(a.ChainKey.Value()); a.ChainKey.IsSet() && n > 0 && n < MinAuditKeyLen {
		errs.Add(p.Field("chainKey"), "%s holds %d bytes; use at least %d random bytes (e.g. openssl rand -hex 32)", a.ChainKey.Ref(), n, MinAuditKeyLen)
	}
	if a.Sync == AuditSyncInterval && a.SyncInterval.D() <= 0 {
		errs.Add(p.Field("syncInterval"), "must be more than 0s with sync: interval")
	}
}

// ResolveAuditKey reads an audit chain key given as a secret reference
// (env:NAME or file:PATH, relative to the working directory), the way the
// config loader resolves chainKey, for `gatehouse audit verify --key`.
func ResolveAuditKey(ref string) ([]byte, error) {
	s, err := NewSecretRef(ref)
	if err != nil {
		return nil, err
	}
	if err := s.resolve("", os.LookupEnv); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if len(s.value) < MinAuditKeyLen {
		return nil, errors.New(ref + ": an audit chain key has at least 32 bytes")
	}
	return s.value, nil
}
