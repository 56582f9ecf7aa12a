package config

import (
	"fmt"
	"slices"
	"strings"
)

// Enum is implemented by the typed string enums of the config (Contour's
// habit: no bare strings for modes). The decoder refuses a value that is
// not one of EnumValues and says which would be valid.
type Enum interface {
	// EnumValues lists the accepted spellings.
	EnumValues() []string
	// EnumNoun names the kind of value, for messages: "a unit", "a log level".
	EnumNoun() string
}

// CheckEnum returns an error naming the valid values when v is not one of
// e's, for flags that take the same values as config fields.
func CheckEnum(e Enum, v string) error { return checkEnum(e, v) }

// checkEnum returns an error naming the valid values when v is not one.
func checkEnum(e Enum, v string) error {
	if slices.Contains(e.EnumValues(), v) {
		return nil
	}
	return fmt.Errorf("%q is not %s; use %s", v, e.EnumNoun(), strings.Join(e.EnumValues(), "|"))
}

// LogLevel is the minimum level of log lines written.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// EnumValues implements Enum.
func (LogLevel) EnumValues() []string { return []string{"debug", "info", "warn", "error"} }

// EnumNoun implements Enum.
func (LogLevel) EnumNoun() string { return "a log level" }

// LogFormat is the encoding of log lines.
type LogFormat string

// Log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// EnumValues implements Enum.
func (LogFormat) EnumValues() []string { return []string{"json", "text"} }

// EnumNoun implements Enum.
func (LogFormat) EnumNoun() string { return "a log format" }

// FailureMode decides what a component answers when a dependency (Redis,
// a JWKS endpoint) cannot be reached: let the request through, or refuse it.
type FailureMode string

// Failure modes.
const (
	FailOpen   FailureMode = "open"
	FailClosed FailureMode = "closed"
)

// EnumValues implements Enum.
func (FailureMode) EnumValues() []string { return []string{"open", "closed"} }

// EnumNoun implements Enum.
func (FailureMode) EnumNoun() string { return "a failure mode" }

// RedisMode selects how gatehouse reaches Redis.
type RedisMode string

// Redis modes.
const (
	RedisSingle   RedisMode = "single"
	RedisSentinel RedisMode = "sentinel"
	RedisCluster  RedisMode = "cluster"
)

// EnumValues implements Enum.
func (RedisMode) EnumValues() []string { return []string{"single", "sentinel", "cluster"} }

// EnumNoun implements Enum.
func (RedisMode) EnumNoun() string { return "a redis mode" }

// RedisNetwork is how gatehouse connects to Redis.
type RedisNetwork string

// Redis networks.
const (
	RedisTCP  RedisNetwork = "tcp"
	RedisUnix RedisNetwork = "unix"
)

// EnumValues implements Enum.
func (RedisNetwork) EnumValues() []string { return []string{"tcp", "unix"} }

// EnumNoun implements Enum.
func (RedisNetwork) EnumNoun() string { return "a redis network" }
