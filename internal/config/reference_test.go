package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReferenceDoc keeps docs/config-reference.md generated from the schema
// itself: every field's path, type, default (the `default` tag, the one
// place defaults live) and doc comment. Run `go test ./internal/config
// -run TestReferenceDoc -update` after changing the schema.
func TestReferenceDoc(t *testing.T) {
	docs := fieldDocs(t)
	var b strings.Builder
	b.WriteString("# gatehouse config reference\n\n")
	b.WriteString("Generated from `internal/config` by `go test ./internal/config -run TestReferenceDoc -update`;\n")
	b.WriteString("do not edit by hand. Defaults shown here are the `default` struct tags, the only place\n")
	b.WriteString("defaults are defined. `gatehouse config defaults` prints them as YAML. See docs/config.md\n")
	b.WriteString("for how files are merged, secrets, validation and reload.\n")
	root := reflect.TypeFor[Config]()
	for _, f := range fieldsOf(root).fields {
		sf := root.FieldByIndex(f.index)
		if f.name == "apiVersion" {
			continue
		}
		fmt.Fprintf(&b, "\n## `%s`\n\n%s\n\n| field | type | default | description |\n|---|---|---|---|\n", f.name, oneLine(docs[root.Name()+"."+sf.Name]))
		// writeChildren, not writeRows: listeners, clusters and routes are
		// lists, whose element fields are rows too.
		writeChildren(&b, docs, Path(f.name), sf.Type, map[reflect.Type]bool{})
	}
	got := b.String()
	for _, sec := range []string{"listeners", "clusters", "routes"} {
		if !strings.Contains(got, "| `"+sec+"[].") {
			t.Errorf("the reference lists no field of %s[]", sec)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|  |") {
			t.Errorf("field without a doc comment (every config field is documented): %s", strings.Split(line, "|")[1])
		}
	}
	path := filepath.Join("..", "..", "docs", "config-reference.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("docs/config-reference.md is stale; run go test ./internal/config -run TestReferenceDoc -update (-want +got):\n%s", diff)
	}
}

func writeRows(b *strings.Builder, docs map[string]string, path Path, t reflect.Type, seen map[reflect.Type]bool) {
	elem := deref(t)
	if !isStructy(elem) || seen[elem] {
		return
	}
	seen[elem] = true
	defer delete(seen, elem)
	for _, sub := range fieldsOf(elem).fields {
		sf := elem.FieldByIndex(sub.index)
		p := path.Field(sub.name)
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", p, typeName(sf.Type), defaultOf(sub), oneLine(docs[ownerOf(elem, sub.index)+"."+sf.Name]))
		writeChildren(b, docs, p, sf.Type, seen)
	}
}

func writeChildren(b *strings.Builder, docs map[string]string, p Path, t reflect.Type, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case isStructy(t):
		writeRows(b, docs, p, t, seen)
	case t.Kind() == reflect.Slice && isStructy(deref(t.Elem())):
		writeRows(b, docs, p+"[]", deref(t.Elem()), seen)
	case t.Kind() == reflect.Map && isStructy(deref(t.Elem())):
		writeRows(b, docs, p+".<name>", deref(t.Elem()), seen)
	case t.Kind() == reflect.Map && deref(t.Elem()).Kind() == reflect.Slice && isStructy(deref(deref(t.Elem()).Elem())):
		writeRows(b, docs, p+".<name>[]", deref(deref(t.Elem()).Elem()), seen)
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isStructy(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !isLeafStruct(t)
}

// ownerOf names the struct that declares the field at index (inline
// fields are declared by the embedded type).
func ownerOf(t reflect.Type, index []int) string {
	for _, i := range index[:len(index)-1] {
		t = t.Field(i).Type
	}
	return t.Name()
}

func defaultOf(f *fieldInfo) string {
	if !f.hasDefault {
		return ""
	}
	if f.def == "" {
		return `""`
	}
	return "`" + f.def + "`"
}

func typeName(t reflect.Type) string {
	opt := ""
	if t.Kind() == reflect.Pointer {
		opt = " (optional)"
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[Duration]():
		return "duration" + opt
	case t == reflect.TypeFor[ByteSize]():
		return "size" + opt
	case t == reflect.TypeFor[Addresses]():
		return "host:port, or a list of host:port" + opt
	case t == secretType:
		return "secret ref (`env:NAME`, `file:PATH`)" + opt
	case t == filePathType:
		return "file path" + opt
	case t == outputPathType:
		return "file path (written by gatehouse)" + opt
	case t == reflect.TypeFor[Regex]():
		return "RE2 regex (whole value)" + opt
	case t == reflect.TypeFor[Pattern]():
		return "RE2 regex (anywhere)" + opt
	case t == reflect.TypeFor[CIDR]():
		return "CIDR" + opt
	case t == reflect.TypeFor[Time]():
		return "RFC 3339 time" + opt
	case t == reflect.TypeFor[TimeZone]():
		return "IANA time zone" + opt
	case t == reflect.TypeFor[SPIFFEID]():
		return "SPIFFE id" + opt
	case t == reflect.TypeFor[SPIFFETrustDomain]():
		return "SPIFFE trust domain" + opt
	case t == reflect.TypeFor[KeyBy]():
		return "subject \\| route \\| tier (a route also: a header entry key)" + opt
	case reflect.PointerTo(t).Implements(unmarshalerType):
		return strings.ToLower(t.Name()) + opt
	case reflect.PointerTo(t).Implements(shorthandType):
		return "open \\| closed, or a section" + opt
	case t.Implements(enumType):
		return strings.Join(reflect.Zero(t).Interface().(Enum).EnumValues(), " \\| ") + opt
	}
	switch t.Kind() {
	case reflect.String:
		return "string" + opt
	case reflect.Bool:
		return "bool" + opt
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer" + opt
	case reflect.Float32, reflect.Float64:
		return "number" + opt
	case reflect.Slice:
		return "list of " + typeName(t.Elem()) + opt
	case reflect.Map:
		return "map of " + typeName(t.Elem()) + opt
	case reflect.Struct:
		return "section" + opt
	case reflect.Interface:
		return "any" + opt
	}
	return t.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", "\\|")
}

// fieldDocs reads the doc comments of every struct field of the package
// source: "Type.Field" → comment.
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sort.Strings(files)
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fld := range st.Fields.List {
				doc := fld.Doc.Text()
				if doc == "" {
					doc = fld.Comment.Text()
				}
				for _, n := range fld.Names {
					out[ts.Name.Name+"."+n.Name] = doc
				}
			}
			return true
		})
	}
	return out
}
