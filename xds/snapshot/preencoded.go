package snapshot

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// preEncoded returns a message of m's type that encodes to b (m's
// deterministic encoding) at the cost of a copy: only its name (field 1)
// is a real field, the rest of b is kept as unknown fields, which
// encoding writes back verbatim.
//
// go-control-plane encodes every resource again for every response it
// sends, so a 2 MB route table pushed to 100 nodes was encoded 100 times
// — most of the cost of a push (bench/xds), and 2,000 clusters encoded
// once per node of a fleet. The snapshot serves these shells for every
// resource; everything that inspects resources (consistency, rendering,
// NACK mapping) reads the real ones.
func preEncoded(m proto.Message, b []byte) (proto.Message, error) {
	shell := m.ProtoReflect().Type().New()
	nameField := shell.Descriptor().Fields().ByNumber(1)
	if nameField == nil || nameField.Kind() != protoreflect.StringKind {
		return nil, fmt.Errorf("%s has no string field 1", shell.Descriptor().FullName())
	}
	var rest []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if num == 1 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			shell.Set(nameField, protoreflect.ValueOfString(string(v)))
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	shell.SetUnknown(rest)
	return shell.Interface(), nil
}
