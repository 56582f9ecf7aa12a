package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the only config schema version this build reads.
const APIVersion = "gatehouse/v1"

// MaxFileSize bounds one config file; anything larger is a mistake (or an
// attack on the parser), not a config.
const MaxFileSize = 16 << 20

// Source remembers where the config came from: the files read and the
// file:line at which every field path was written.
type Source struct {
	// Files are the files read, in the order they were merged.
	Files []string
	// Root is the path given to Load: a file or a directory. It is empty
	// for a config loaded from bytes.
	Root string

	pos      map[Path]Pos
	nodeFile map[*yaml.Node]string
	// inputs are the files the config refers to (key files, OpenAPI
	// documents): part of the config's content, and watched for reload.
	inputs []string
	// secrets hashes the resolved secret values, so that a rotated secret
	// is a change to apply, without the values reaching Version.
	secrets hash.Hash
}

func newSource() *Source {
	return &Source{pos: map[Path]Pos{}, nodeFile: map[*yaml.Node]string{}, secrets: sha256.New()}
}

func (s *Source) addInput(path string) {
	if !slices.Contains(s.inputs, path) {
		s.inputs = append(s.inputs, path)
	}
}

func (s *Source) addSecret(v []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	s.secrets.Write(n[:])
	s.secrets.Write(v)
}

// InputFiles lists the files the config refers to (not secrets, not the
// config files themselves), sorted.
func (s *Source) InputFiles() []string {
	out := slices.Clone(s.inputs)
	slices.Sort(out)
	return out
}

func (s *Source) record(p Path, pos Pos) {
	if _, ok := s.pos[p]; !ok {
		s.pos[p] = pos
	}
}

func (s *Source) nodePos(n *yaml.Node) Pos {
	return Pos{File: s.nodeFile[n], Line: n.Line, Column: n.Column}
}

func (s *Source) dirOf(n *yaml.Node) string {
	f := s.nodeFile[n]
	if f == "" || strings.HasPrefix(f, "<") {
		return ""
	}
	return filepath.Dir(f)
}

// Locate returns where path (or, failing that, its nearest enclosing
// field) was written. The zero Pos means it is not in any file, e.g. a
// default.
func (s *Source) Locate(p Path) Pos {
	if s == nil {
		return Pos{}
	}
	for {
		if pos, ok := s.pos[p]; ok {
			return pos
		}
		if p == "" {
			return Pos{}
		}
		p = parentPath(p)
	}
}

// Has reports whether path was written in a config file (as opposed to
// being filled by a default).
func (s *Source) Has(p Path) bool {
	if s == nil {
		return false
	}
	_, ok := s.pos[p]
	return ok
}

func parentPath(p Path) Path {
	s := string(p)
	if strings.HasSuffix(s, "]") {
		if i := strings.LastIndex(s, "["); i >= 0 {
			return Path(s[:i])
		}
	}
	if i := strings.LastIndexAny(s, ".["); i >= 0 {
		return Path(s[:i])
	}
	return ""
}

// LoadOptions tune Load.
type LoadOptions struct {
	// LookupEnv resolves env: secrets; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// SkipSecrets checks the form of secret references without reading
	// them, for `gatehouse validate` in a CI that holds no secrets.
	SkipSecrets bool
}

// Load reads a config file, or every *.yaml / *.yml file of a directory
// (not recursing, skipping hidden files) merged into one config. Mappings
// written in several files merge; lists concatenate in file order; the same
// scalar written twice is an error. The returned error, when not nil, is an
// Errors value listing every problem with its file and line.
func Load(path string, opts LoadOptions) (*Config, error) {
	files, err := configFiles(path)
	if err != nil {
		return nil, err
	}
	var frags []fragment
	for _, f := range files {
		b, err := readLimited(f)
		if err != nil {
			return nil, err
		}
		frags = append(frags, fragment{name: f, data: b})
	}
	cfg, err := load(frags, opts)
	if cfg != nil {
		cfg.Source.Root = path
	}
	return cfg, err
}

// LoadBytes reads a config held in memory, such as the embedded default.
// name is used in messages ("<embedded>:12: ...").
func LoadBytes(name string, data []byte, opts LoadOptions) (*Config, error) {
	return load([]fragment{{name: name, data: data}}, opts)
}

type fragment struct {
	name string
	data []byte
}

func configFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %v", unwrapPathError(err))
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("config: %v", unwrapPathError(err))
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // editors' swap files, Kubernetes' ..data links
		}
		if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" {
			continue
		}
		full := filepath.Join(path, name)
		if st, err := os.Stat(full); err != nil || st.IsDir() {
			continue
		}
		files = append(files, full)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("config: directory %s holds no *.yaml or *.yml files", path)
	}
	slices.Sort(files)
	return files, nil
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("config: %v", unwrapPathError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %v", name, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", name, MaxFileSize)
	}
	return b, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

func load(frags []fragment, opts LoadOptions) (*Config, error) {
	src := newSource()
	var errs Errors
	var root *yaml.Node
	parsed := make([][]*yaml.Node, len(frags))
	perr := make([]*FieldError, len(frags))
	for i, fr := range frags {
		parsed[i], perr[i] = parseDocuments(fr)
	}
	documents := namedDocuments(frags, parsed)
	for i, fr := range frags {
		if documents[i] {
			// An OpenAPI document a route names, beside the config
			// files: its own loader reads (and reports) it.
			continue
		}
		src.Files = append(src.Files, fr.name)
		docs, err := parsed[i], perr[i]
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, doc := range docs {
			markFile(doc, fr.name, src.nodeFile, 0)
			if doc.Kind != yaml.MappingNode {
				errs = append(errs, &FieldError{Pos: src.nodePos(doc), Msg: "a config file holds a mapping at the top (apiVersion: " + APIVersion + ", ...), got " + describe(doc)})
				continue
			}
			if e := checkAPIVersion(doc, src); e != nil {
				errs = append(errs, e)
				continue
			}
			if root == nil {
				root = doc
				continue
			}
			mergeNodes(root, doc, "", src, &errs)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if root == nil {
		return nil, Errors{{Pos: Pos{File: frags[0].name}, Msg: "config is empty; it needs at least apiVersion: " + APIVersion}}
	}

	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	d := &decoder{src: src, env: lookup, skipSecrets: opts.SkipSecrets}
	cfg := &Config{}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.Source = src
	cfg.conditionalDefaults()
	errs = append(errs, d.errs...)
	// Validate even when decoding failed, so that one run shows every
	// problem; but drop what validation says about fields that already
	// failed to decode (it would only repeat them as "is required").
	for _, e := range cfg.Validate() {
		if !overlapsAny(e.Path, d.errs) {
			errs = append(errs, e)
		}
	}
	errs = errs.Located(src)
	if errs.HasErrors() {
		return nil, errs
	}
	cfg.Warnings = errs.Warnings()
	cfg.Version = versionOf(cfg)
	cfg.fingerprint = hex.EncodeToString(src.secrets.Sum([]byte(cfg.Version)))
	return cfg, nil
}

func overlapsAny(p Path, errs Errors) bool {
	for _, e := range errs {
		if under(p, e.Path) || under(e.Path, p) {
			return true
		}
	}
	return false
}

// under reports whether p is q or lies below it.
func under(p, q Path) bool {
	if q == "" || p == q {
		return true
	}
	rest, ok := strings.CutPrefix(string(p), string(q))
	return ok && (rest[0] == '.' || rest[0] == '[')
}

// conditionalDefaults applies the few defaults that depend on another
// field, and so cannot be a plain `default` tag. Each is documented on its
// field.
func (c *Config) conditionalDefaults() {
	if c.Audit.File != "" && !c.Source.Has("audit.stdout") {
		c.Audit.Stdout = false
	}
}

// parseDocuments splits a file into its YAML documents (--- separated).
func parseDocuments(fr fragment) ([]*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(fr.data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, yamlSyntaxError(fr.name, err)
		}
		if len(doc.Content) == 0 {
			continue // an empty document, e.g. only comments
		}
		docs = append(docs, doc.Content[0])
	}
	return docs, nil
}

// yamlSyntaxError turns "yaml: line 12: did not find expected key" into a
// FieldError at file:12.
func yamlSyntaxError(file string, err error) *FieldError {
	msg := cleanYAMLErr(err)
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if _, e := fmt.Sscanf(num, "%d", &line); e == nil {
				msg = after
			}
		}
	}
	return &FieldError{Pos: Pos{File: file, Line: line}, Msg: "invalid YAML: " + msg}
}

func markFile(n *yaml.Node, file string, m map[*yaml.Node]string, depth int) {
	if n == nil || depth > 10_000 {
		return
	}
	if _, done := m[n]; done {
		return
	}
	m[n] = file
	for _, c := range n.Content {
		markFile(c, file, m, depth+1)
	}
}

func checkAPIVersion(doc *yaml.Node, src *Source) *FieldError {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "apiVersion" {
			v := doc.Content[i+1]
			if v.Value != APIVersion {
				return &FieldError{Pos: src.nodePos(v), Path: "apiVersion", Msg: fmt.Sprintf("%q is not supported; use %s", v.Value, APIVersion)}
			}
			return nil
		}
	}
	if mappingIndex(doc, "openapi") >= 0 || mappingIndex(doc, "swagger") >= 0 {
		return &FieldError{Pos: src.nodePos(doc), Path: "apiVersion", Msg: "this is an OpenAPI document, not a gatehouse config file: " +
			"keep documents in a subfolder of the config directory (openapi/), which is never read as config, " +
			"or name this file in routes[].extproc.openapi.file"}
	}
	return &FieldError{Pos: src.nodePos(doc), Path: "apiVersion", Msg: "missing; every config file starts with apiVersion: " + APIVersion}
}

// namedDocuments marks the fragments that are OpenAPI documents named by
// a route (routes[].extproc.openapi.file) of another fragment, so that a
// directory can hold a document beside the config files (a Kubernetes
// ConfigMap mounts flat). Only a fragment that is not a config itself (no
// document in it has apiVersion) is marked: naming a file never hides a
// config, and a mistyped config nobody names is still refused.
func namedDocuments(frags []fragment, parsed [][]*yaml.Node) map[int]bool {
	named := map[string]bool{}
	for i, fr := range frags {
		if strings.HasPrefix(fr.name, "<") {
			continue
		}
		for _, doc := range parsed[i] {
			if doc.Kind != yaml.MappingNode || mappingIndex(doc, "apiVersion") < 0 {
				continue
			}
			for _, f := range openAPIFiles(doc) {
				if !filepath.IsAbs(f) {
					f = filepath.Join(filepath.Dir(fr.name), f)
				}
				named[filepath.Clean(f)] = true
			}
		}
	}
	out := map[int]bool{}
	for i, fr := range frags {
		if !named[filepath.Clean(fr.name)] {
			continue
		}
		config := false
		for _, doc := range parsed[i] {
			if doc.Kind == yaml.MappingNode && mappingIndex(doc, "apiVersion") >= 0 {
				config = true
			}
		}
		if !config {
			out[i] = true
		}
	}
	return out
}

// openAPIFiles lists the routes[].extproc.openapi.file values of a config
// document, as written.
func openAPIFiles(doc *yaml.Node) []string {
	child := func(n *yaml.Node, key string) *yaml.Node {
		if n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		if i := mappingIndex(n, key); i >= 0 {
			return n.Content[i+1]
		}
		return nil
	}
	routes := child(doc, "routes")
	if routes == nil || routes.Kind != yaml.SequenceNode {
		return nil
	}
	var out []string
	for _, r := range routes.Content {
		if f := child(child(child(r, "extproc"), "openapi"), "file"); f != nil && f.Kind == yaml.ScalarNode && f.Value != "" {
			out = append(out, f.Value)
		}
	}
	return out
}

// mergeNodes merges the mapping src into dst: new keys are added, nested
// mappings merge, lists concatenate, and a scalar set in both is an error
// that names both places.
func mergeNodes(dst, src *yaml.Node, path Path, s *Source, errs *Errors) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		if path == "" && k.Value == "apiVersion" {
			continue
		}
		p := path.Key(k.Value)
		j := mappingIndex(dst, k.Value)
		if j < 0 {
			dst.Content = append(dst.Content, k, v)
			continue
		}
		dv := dst.Content[j+1]
		switch {
		case dv.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode:
			mergeNodes(dv, v, p, s, errs)
		case dv.Kind == yaml.SequenceNode && v.Kind == yaml.SequenceNode:
			dv.Content = append(dv.Content, v.Content...)
		default:
			*errs = append(*errs, &FieldError{Pos: s.nodePos(k), Path: p,
				Msg: fmt.Sprintf("set here and also at %s; a value may be written in one file only", s.nodePos(dst.Content[j]))})
		}
	}
}

func mappingIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// versionOf is a content hash of the effective config (secret references,
// not their values) and of the files it refers to: the same config gives
// the same version on every replica, and audit lines name the policy
// version they were decided by.
func versionOf(cfg *Config) string {
	h := sha256.New()
	hashValue(h, reflect.ValueOf(cfg).Elem())
	for _, f := range cfg.Source.InputFiles() {
		hashInput(h, f)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// hashInput adds a referenced file to h, or, for a directory (as
// ratelimit.envoyConfigs may name), every file below it, skipping hidden
// entries such as Kubernetes' ..data as the components do. Reading a
// directory as a file fails the same way whatever it holds, which left
// the version (and SameContent) blind to a changed file inside it.
func hashInput(h hash.Hash, f string) {
	st, err := os.Stat(f)
	if err != nil || !st.IsDir() {
		hashFile(h, f)
		return
	}
	var names []string
	_ = filepath.WalkDir(f, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			names = append(names, p) // hashed as unreadable
		case p != f && strings.HasPrefix(d.Name(), "."):
			if d.IsDir() {
				return filepath.SkipDir
			}
		case !d.IsDir():
			names = append(names, p)
		}
		return nil
	})
	slices.Sort(names)
	for _, n := range names {
		hashFile(h, n)
	}
}

func hashFile(h hash.Hash, f string) {
	// A file that cannot be read is the component's error to report;
	// here it only makes the version differ from when it could be.
	content, err := readLimited(f)
	if err != nil {
		content = []byte("unreadable: " + err.Error())
	}
	sum := sha256.Sum256(content)
	h.Write([]byte(f + "\x00"))
	h.Write(sum[:])
}

// SameContent reports whether two loaded configs are the same in every
// respect a reload can apply: config text, referenced files and secret
// values.
func (c *Config) SameContent(o *Config) bool {
	return c.fingerprint != "" && c.fingerprint == o.fingerprint
}
