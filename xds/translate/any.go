package translate

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

type protoMessage = proto.Message

// deterministic marshals map fields in key order: typed configs are
// packed into Any as bytes, and the version hash of a snapshot is taken
// over those bytes, so map order must not leak into them.
var deterministic = proto.MarshalOptions{Deterministic: true}

// toAny packs m into an Any deterministically.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, deterministic); err != nil {
		return nil, err
	}
	return a, nil
}

func structOf(kv map[string]string) *structpb.Struct {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(kv))}
	for k, v := range kv {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	return s
}
