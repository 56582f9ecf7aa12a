package config

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the work of one decode, so that a config built from
// aliases of aliases ("billion laughs") is refused instead of eating memory.
const maxNodes = 1_000_000

// decoder turns a yaml.Node tree into config structs. Unlike yaml's own
// strict mode it does not stop at the first problem: it records every
// unknown field, wrong type and bad enum value with its file, line and field
// path, and it remembers where each path was written so that problems
// found later (by Validate or by a component) can be located too.
type decoder struct {
	src         *Source
	errs        Errors
	nodes       int
	env         func(string) (string, bool)
	skipSecrets bool
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	enumType        = reflect.TypeFor[Enum]()
	secretType      = reflect.TypeFor[Secret]()
	sourcedType     = reflect.TypeFor[sourced]()
	filePathType    = reflect.TypeFor[FilePath]()
	outputPathType  = reflect.TypeFor[OutputPath]()
	shorthandType   = reflect.TypeFor[scalarShorthand]()
	watchedFileType = reflect.TypeFor[WatchedFile]()
)

// FilePath is a path to a file named in config. A relative path is
// resolved against the directory of the config file it is written in, so a
// config directory can be moved as a whole.
type FilePath string

// String returns the resolved path.
func (p FilePath) String() string { return string(p) }

// OutputPath is a path to a file gatehouse writes (the audit log). It is
// resolved like FilePath, but its content is not part of the config.
type OutputPath string

// String returns the resolved path.
func (p OutputPath) String() string { return string(p) }

// WatchedFile is a file gatehouse reads at start and reloads by itself
// when it changes (certificates, keys, trust bundles). It is resolved like
// FilePath, but its content is not part of the config: a rotated
// certificate is not a config change.
type WatchedFile string

// String returns the resolved path.
func (p WatchedFile) String() string { return string(p) }

func (d *decoder) errAt(n *yaml.Node, path Path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Pos: d.src.nodePos(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// spend counts k units of work against maxNodes and reports whether the
// budget is used up; the first overrun is reported at n.
func (d *decoder) spend(k int, n *yaml.Node, path Path) bool {
	if d.nodes > maxNodes {
		return true
	}
	d.nodes += k
	if d.nodes > maxNodes {
		d.errAt(n, path, "config is too large (more than %d nodes after expanding aliases)", maxNodes)
		return true
	}
	return false
}

// decode decodes n into v (which must be settable) at path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path Path) {
	if d.spend(1, n, path) {
		return
	}
	for depth := 0; n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 || n.Alias == nil {
			d.errAt(n, path, "alias chain too deep")
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if isNull(n) {
		// An explicit null (or an empty value) means "not set": the field
		// keeps its zero value and, when it has one, its default.
		return
	}

	t := v.Type()
	switch {
	case t == secretType:
		d.decodeSecret(n, v, path)
		return
	case t == filePathType || t == outputPathType || t == watchedFileType:
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			d.errAt(n, path, "expected a file path")
			return
		}
		resolved := resolvePath(d.src.dirOf(n), n.Value)
		if t == filePathType {
			d.src.addInput(resolved)
		}
		v.SetString(resolved)
		return
	case reflect.PointerTo(t).Implements(unmarshalerType):
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errAt(n, path, "%s", cleanYAMLErr(err))
		}
		return
	case n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(shorthandType):
		// A section written as one value (failureMode: closed); as a
		// mapping it decodes field by field below.
		if err := v.Addr().Interface().(scalarShorthand).fromScalar(n.Value); err != nil {
			d.errAt(n, path, "%s", err)
		}
		return
	}

	switch t.Kind() {
	case reflect.Pointer:
		nv := reflect.New(t.Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem() == secretType {
				// Do not echo the value: it may be the secret itself.
				d.errAt(n, path, "expected a list of secret references (env:NAME or file:PATH); a literal secret is not allowed in config")
				return
			}
			d.errAt(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := path.Index(i)
			d.src.record(p, d.src.nodePos(item))
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errAt(n, path, "%s", cleanYAMLErr(err))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *decoder) decodeSecret(n *yaml.Node, v reflect.Value, path Path) {
	var s Secret
	if err := s.UnmarshalYAML(n); err != nil {
		d.errAt(n, path, "%s", err)
		return
	}
	if !d.skipSecrets {
		if err := s.resolve(d.src.dirOf(n), d.env); err != nil {
			d.errAt(n, path, "secret %s: %s", s.ref, err)
			return
		}
		d.src.addSecret(s.value)
	}
	v.Set(reflect.ValueOf(s))
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path Path) {
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, path, "expected %s, got %s", kindNoun(v.Type()), describe(n))
		return
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		if e, ok := v.Interface().(Enum); ok && v.Type().Implements(enumType) {
			if err := checkEnum(e, s); err != nil {
				d.errAt(n, path, "%s", err)
				return
			}
		}
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || n.Tag != "!!bool" {
			d.errAt(n, path, "expected true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			d.errAt(n, path, "%s", numErr(s, err, "an integer"))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if strings.HasPrefix(s, "-") {
			d.errAt(n, path, "%q is negative; expected a whole number of zero or more", s)
			return
		}
		u, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			d.errAt(n, path, "%s", numErr(s, err, "a whole number"))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errAt(n, path, "expected a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		d.errAt(n, path, "cannot decode into %s", v.Type())
	}
}

func numErr(s string, err error, noun string) string {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Sprintf("%s is out of range", s)
	}
	return fmt.Sprintf("expected %s, got %q", noun, s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path Path) {
	if n.Kind != yaml.MappingNode {
		d.errAt(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errAt(n, path, "cannot decode into %s", t)
		return
	}
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for _, kv := range d.pairs(n, path) {
		key, val := kv[0], kv[1]
		if key.Kind != yaml.ScalarNode {
			d.errAt(key, path, "map keys must be strings, got %s", describe(key))
			continue
		}
		p := path.Key(key.Value)
		if first, dup := seen[key.Value]; dup {
			d.errAt(key, p, "duplicate key %q (first at line %d)", key.Value, first.Line)
			continue
		}
		seen[key.Value] = key
		d.src.record(p, d.src.nodePos(key))
		kv := reflect.New(t.Key()).Elem()
		d.decodeScalar(key, kv, p)
		ev := reflect.New(t.Elem()).Elem()
		d.decode(val, ev, p)
		if t.Elem().Kind() == reflect.Struct {
			// Defaults of struct values are applied by decodeStruct; a null
			// value still needs them.
			if isNull(val) {
				d.applyDefaults(ev, p)
			}
		}
		m.SetMapIndex(kv, ev)
	}
	v.Set(m)
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path Path) {
	if n.Kind != yaml.MappingNode {
		d.errAt(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	info := fieldsOf(v.Type())
	present := map[string]*yaml.Node{}
	for _, kv := range d.pairs(n, path) {
		key, val := kv[0], kv[1]
		if key.Kind != yaml.ScalarNode {
			d.errAt(key, path, "field names must be strings, got %s", describe(key))
			continue
		}
		name := key.Value
		p := path.Field(name)
		if first, dup := present[name]; dup {
			d.errAt(key, p, "duplicate field %q (first at line %d)", name, first.Line)
			continue
		}
		f, ok := info.byName[name]
		if !ok {
			d.errAt(key, p, "unknown field %q%s", name, suggest(name, info.names))
			continue
		}
		present[name] = key
		d.src.record(p, d.src.nodePos(key))
		fv := v.FieldByIndex(f.index)
		d.decode(val, fv, p)
		if isNull(val) {
			d.applyFieldDefault(fv, f, p)
		}
	}
	for _, f := range info.fields {
		if _, ok := present[f.name]; !ok {
			d.applyFieldDefault(v.FieldByIndex(f.index), f, path.Field(f.name))
		}
	}
}

// applyDefaults fills the defaults of every field of struct v.
func (d *decoder) applyDefaults(v reflect.Value, path Path) {
	for _, f := range fieldsOf(v.Type()).fields {
		d.applyFieldDefault(v.FieldByIndex(f.index), f, path.Field(f.name))
	}
}

// applyFieldDefault sets an absent field to its `default` tag, or fills the
// defaults inside an absent (non-pointer) struct.
func (d *decoder) applyFieldDefault(fv reflect.Value, f *fieldInfo, path Path) {
	if f.hasDefault {
		// Defaults are scalars written as plain YAML would read them
		// ("15s", "true", "gh:"), so the field's own decoding applies.
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: f.def}
		n.Tag = n.ShortTag()
		if fv.Kind() == reflect.String {
			n.Tag = "!!str"
		}
		d.decode(n, fv, path)
		return
	}
	if fv.Kind() == reflect.Struct && !isLeafStruct(fv.Type()) {
		d.applyDefaults(fv, path)
	}
}

func isLeafStruct(t reflect.Type) bool {
	return t == secretType || reflect.PointerTo(t).Implements(unmarshalerType)
}

// pairs returns the key/value pairs of a mapping with YAML merge keys
// ("<<: *base") expanded; keys written in the mapping itself win.
// Expanded pairs count against maxNodes: merge keys of lists of aliases of
// mappings that merge again multiply like aliases of aliases do, before
// decode would count a single node.
func (d *decoder) pairs(n *yaml.Node, path Path) [][2]*yaml.Node {
	if d.spend(0, n, path) {
		return nil
	}
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.mergeSources(v, path)...)
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	if d.spend(len(merged), n, path) {
		return own
	}
	have := map[string]bool{}
	for _, kv := range own {
		have[kv[0].Value] = true
	}
	for _, kv := range merged {
		if !have[kv[0].Value] {
			have[kv[0].Value] = true
			own = append(own, kv)
		}
	}
	return own
}

func (d *decoder) mergeSources(v *yaml.Node, path Path) [][2]*yaml.Node {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path)
	case yaml.SequenceNode:
		var out [][2]*yaml.Node
		for _, item := range v.Content {
			out = append(out, d.mergeSources(item, path)...)
		}
		return out
	}
	d.errAt(v, path, "a merge key (<<) needs a mapping or a list of mappings")
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func kindNoun(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "an integer"
	}
}

// cleanYAMLErr drops the "yaml: " prefixes that make messages noisy.
func cleanYAMLErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n  ")
	return strings.TrimPrefix(s, "yaml: ")
}

type fieldInfo struct {
	name       string
	index      []int
	def        string
	hasDefault bool
}

type structInfo struct {
	fields []*fieldInfo
	byName map[string]*fieldInfo
	names  []string
}

var fieldCache sync.Map // reflect.Type → *structInfo

// fieldsOf lists the YAML fields of a struct type, flattening fields tagged
// `yaml:",inline"`. Fields tagged `yaml:"-"` or unexported are skipped.
func fieldsOf(t reflect.Type) *structInfo {
	if si, ok := fieldCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byName: map[string]*fieldInfo{}}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int(nil), prefix...), i)
			if strings.Contains(opts, "inline") {
				walk(sf.Type, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name[:1]) + sf.Name[1:]
			}
			def, has := sf.Tag.Lookup("default")
			fi := &fieldInfo{name: name, index: idx, def: def, hasDefault: has}
			si.fields = append(si.fields, fi)
			si.byName[name] = fi
			si.names = append(si.names, name)
		}
	}
	walk(t, nil)
	sort.Strings(si.names)
	fieldCache.Store(t, si)
	return si
}

// suggest proposes the closest valid field name, or lists them when none
// is close: "unknown field "adress" (did you mean "address"?)".
func suggest(name string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(strings.ToLower(name), strings.ToLower(v)); d < bestD {
			best, bestD = v, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(valid) == 0 {
		return "; this section takes no fields"
	}
	return "; valid fields: " + strings.Join(valid, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// resolvePath anchors a relative path at dir.
func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}
