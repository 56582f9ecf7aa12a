package snapshot

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what protoc-gen-validate generates.
type validator interface{ ValidateAll() error }

// ValidateDeep runs m's ValidateAll and that of every message packed in an
// Any inside it (typed_config of filters and transport sockets, per-route
// filter configs, protocol options): the generated rules stop at an Any,
// and most of an HTTP listener lives in them.
func ValidateDeep(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return walkAnys(m.ProtoReflect(), 0)
}

const maxDepth = 32

func walkAnys(m protoreflect.Message, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("messages nested deeper than %d", maxDepth)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = visit(mv.Message(), depth)
					return err == nil
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len() && err == nil; i++ {
					err = visit(l.Get(i).Message(), depth)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			err = visit(v.Message(), depth)
		}
		return err == nil
	})
	return err
}

func visit(m protoreflect.Message, depth int) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		if err := ValidateDeep(inner); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return nil
	}
	return walkAnys(m, depth+1)
}
