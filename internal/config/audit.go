package config

// Audit configures the audit log: one hash-chained JSON line per authz
// decision, webhook verification, config change and xDS NACK.
type Audit struct {
	// File is the audit log file; empty means no file sink. It is rotated
	// at MaxSize; the hash chain continues across rotated files.
	File FilePath `yaml:"file,omitempty"`
	// Stdout writes audit lines to standard output (logs go to standard
	// error, so the two streams stay apart). On by default so that no
	// decision goes unrecorded; turn it off when File is set.
	Stdout bool `yaml:"stdout" default:"true"`
	// BufferSize bounds the lines waiting to be written. When it is full
	// a line is dropped (never blocking a decision), the loss is counted
	// and the next written line records the gap.
	BufferSize int `yaml:"bufferSize" default:"8192"`
	// MaxSize rotates the file when it would grow past this size.
	MaxSize ByteSize `yaml:"maxSize" default:"100MiB"`
	// MaxBackups is how many rotated files to keep (0 = keep all).
	MaxBackups int `yaml:"maxBackups" default:"10"`
}
