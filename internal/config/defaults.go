package config

import (
	"fmt"
	"reflect"
	"sync"
)

var defaultsCache sync.Map // reflect.Type → reflect.Value

// Defaults returns a section of the config (any struct of the schema:
// Server, XDSServices, ExtProc, ...) with every field at its `default`
// tag, as the loader fills a section written empty. The tags stay the
// one place a default is written: a component that needs a section's
// defaults without a config (a config without that section, say) asks
// here instead of copying them.
func Defaults[T any]() T {
	t := reflect.TypeFor[T]()
	if v, ok := defaultsCache.Load(t); ok {
		return v.(reflect.Value).Interface().(T)
	}
	var out T
	d := &decoder{src: newSource(), env: func(string) (string, bool) { return "", false }, skipSecrets: true}
	d.applyDefaults(reflect.ValueOf(&out).Elem(), "")
	if len(d.errs) > 0 {
		// A default tag that does not decode is a bug of the schema, and
		// TestDefaultsDecode keeps the schema free of it.
		panic(fmt.Sprintf("config: the defaults of %s do not decode: %v", t, d.errs))
	}
	defaultsCache.Store(t, reflect.ValueOf(out))
	return out
}
