// Package render prints Envoy resources for people: the exact resources
// gatehouse pushes, as YAML or JSON in Envoy's own field names, and a
// reviewable diff between two configs' resources, one listener, cluster,
// load assignment or route at a time.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/xds/translate"
)

// Format is an output format.
type Format string

// Formats.
const (
	YAML Format = "yaml"
	JSON Format = "json"
)

// marshal uses Envoy's field names (snake_case), as in Envoy's docs and
// config dumps, so that output can be compared with both.
var marshal = protojson.MarshalOptions{UseProtoNames: true}

// section is one resource type of the output, in push order.
type section struct {
	key   string
	items []proto.Message
}

func sections(res *translate.Resources) []section {
	s := []section{{key: "clusters"}, {key: "endpoints"}, {key: "listeners"}, {key: "routes"}}
	for _, c := range res.Clusters {
		s[0].items = append(s[0].items, c)
	}
	for _, e := range res.Endpoints {
		s[1].items = append(s[1].items, e)
	}
	for _, l := range res.Listeners {
		s[2].items = append(s[2].items, l)
	}
	for _, r := range res.Routes {
		s[3].items = append(s[3].items, r)
	}
	return s
}

// Resources renders every resource. The output is deterministic: the
// same resources give the same bytes.
func Resources(res *translate.Resources, f Format) ([]byte, error) {
	var doc bytes.Buffer
	doc.WriteString("{")
	for i, s := range sections(res) {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, "%q:[", s.key)
		for j, m := range s.items {
			if j > 0 {
				doc.WriteString(",")
			}
			b, err := marshal.Marshal(m)
			if err != nil {
				return nil, err
			}
			doc.Write(b)
		}
		doc.WriteString("]")
	}
	doc.WriteString("}")
	return format(doc.Bytes(), f)
}

// Message renders one resource.
func Message(m proto.Message, f Format) ([]byte, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, err
	}
	return format(b, f)
}

// format normalises protojson's output (which varies its whitespace on
// purpose) into indented JSON, or YAML with the field order kept.
func format(js []byte, f Format) ([]byte, error) {
	if f == JSON {
		var out bytes.Buffer
		if err := json.Indent(&out, js, "", "  "); err != nil {
			return nil, err
		}
		out.WriteByte('\n')
		return out.Bytes(), nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, err
	}
	blockStyle(&n)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// blockStyle turns JSON's flow style into YAML's block style, and drops
// the quotes JSON needs but YAML does not. The encoder re-quotes a string
// that YAML 1.2 would read as another type ("true", "123"), but not the
// YAML 1.1 booleans (yes, no, on, off, y, n): Envoy's YAML loader reads
// those as booleans, so a header value "on" must stay quoted.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style == yaml.DoubleQuotedStyle && !yaml11Bool(n.Value) {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func yaml11Bool(s string) bool {
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "on", "off":
		return true
	}
	return false
}
