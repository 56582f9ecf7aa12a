package snapshot

import (
	"fmt"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
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
	return (&deepValidator{seen: map[string]error{}}).validate(m, 0)
}

// deepValidator remembers the Anys it validated: thousands of routes carry
// byte-identical filter configs (ext_proc disabled, say), each unpacked
// once.
type deepValidator struct {
	seen map[string]error
}

func (d *deepValidator) validate(m proto.Message, depth int) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return d.walkAnys(m.ProtoReflect(), depth)
}

const maxDepth = 32

func (d *deepValidator) walkAnys(m protoreflect.Message, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("messages nested deeper than %d", maxDepth)
	}
	if r, ok := m.Interface().(*routev3.Route); ok && r.GetFilterAction() == nil && r.GetTracing() == nil {
		// A route table is thousands of routes whose only Anys are the
		// per-filter configs and what the route action may hold; going
		// straight to them halves the cost of validating a big table.
		for _, a := range r.GetTypedPerFilterConfig() {
			if err := d.visit(a.ProtoReflect(), depth); err != nil {
				return err
			}
		}
		if ra := r.GetRoute(); ra != nil {
			return d.walkAnys(ra.ProtoReflect(), depth+1)
		}
		return nil
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !fieldMayHoldAny(fd) {
			return true // most of a route table: matchers, metadata, numbers
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = d.visit(mv.Message(), depth)
					return err == nil
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len() && err == nil; i++ {
					err = d.visit(l.Get(i).Message(), depth)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			err = d.visit(v.Message(), depth)
		}
		return err == nil
	})
	return err
}

func (d *deepValidator) visit(m protoreflect.Message, depth int) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return d.walkAnys(m, depth+1)
	}
	key := a.GetTypeUrl() + "\x00" + string(a.GetValue())
	if err, done := d.seen[key]; done {
		return err
	}
	err := d.unpack(a, depth)
	d.seen[key] = err
	return err
}

func (d *deepValidator) unpack(a *anypb.Any, depth int) error {
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	if err := d.validate(inner, depth+1); err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// mayHoldAny caches, per message type, whether an Any can be reached
// from it. Types on a cycle count as "may", which only costs a walk.
var mayHoldAny sync.Map // protoreflect.FullName → bool

func fieldMayHoldAny(fd protoreflect.FieldDescriptor) bool {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return false
	}
	if v, ok := mayHoldAny.Load(fd.Message().FullName()); ok {
		return v.(bool)
	}
	return messageMayHoldAny(fd.Message(), map[protoreflect.FullName]bool{})
}

func messageMayHoldAny(md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) bool {
	name := md.FullName()
	if v, ok := mayHoldAny.Load(name); ok {
		return v.(bool)
	}
	if name == "google.protobuf.Any" || visiting[name] {
		return true
	}
	visiting[name] = true
	defer delete(visiting, name)
	found := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !found; i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			found = messageMayHoldAny(fd.Message(), visiting)
		}
	}
	if len(visiting) == 1 {
		// Only a result computed outside any cycle is final.
		mayHoldAny.Store(name, found)
	}
	return found
}
