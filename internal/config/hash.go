package config

import (
	"encoding/binary"
	"hash"
	"math"
	"reflect"
	"slices"
)

// hashValue writes a canonical encoding of v into h: struct fields by YAML
// name in declaration order, map entries sorted by key, every string
// length-prefixed so that no two values share an encoding. Secrets
// contribute their reference only. It is the config's content hash; it
// walks the values directly because rendering a large config as YAML just
// to hash it took seconds.
func hashValue(h hash.Hash, v reflect.Value) {
	var buf [9]byte
	word := func(tag byte, n uint64) {
		buf[0] = tag
		binary.BigEndian.PutUint64(buf[1:], n)
		h.Write(buf[:])
	}
	str := func(s string) {
		word('s', uint64(len(s)))
		h.Write([]byte(s))
	}
	t := v.Type()
	if t == secretType {
		str(v.Interface().(Secret).ref)
		return
	}
	if t.Implements(sourcedType) {
		str(v.Interface().(sourced).source())
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			word('n', 0)
			return
		}
		word('p', 0)
		hashValue(h, v.Elem())
	case reflect.Struct:
		info := fieldsOf(t)
		word('{', uint64(len(info.fields)))
		for _, f := range info.fields {
			str(f.name)
			hashValue(h, v.FieldByIndex(f.index))
		}
	case reflect.Slice, reflect.Array:
		word('[', uint64(v.Len()))
		for i := range v.Len() {
			hashValue(h, v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			switch x, y := a.String(), b.String(); {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		})
		word('m', uint64(len(keys)))
		for _, k := range keys {
			str(k.String())
			hashValue(h, v.MapIndex(k))
		}
	case reflect.String:
		str(v.String())
	case reflect.Bool:
		b := uint64(0)
		if v.Bool() {
			b = 1
		}
		word('b', b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		word('i', uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		word('u', v.Uint())
	case reflect.Float32, reflect.Float64:
		word('f', math.Float64bits(v.Float()))
	default:
		// Channels and funcs do not occur in config; mark them so the
		// encoding stays total.
		word('?', uint64(v.Kind()))
	}
}
