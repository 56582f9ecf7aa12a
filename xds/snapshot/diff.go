package snapshot

import (
	"sort"
)

// ChangeKind says what happened to a resource between two sets.
type ChangeKind string

// Change kinds.
const (
	Added   ChangeKind = "added"
	Removed ChangeKind = "removed"
	Changed ChangeKind = "changed"
)

// Change is one resource that differs between two sets.
type Change struct {
	Type string     `json:"type"`
	Name string     `json:"name"`
	Kind ChangeKind `json:"change"`
}

// Diff lists the resources added, removed or changed from a to b, by
// type (in TypeURLs order) and name. A nil a means everything is added.
func Diff(a, b *Set) []Change {
	var out []Change
	for _, typ := range TypeURLs {
		var old, cur map[string]string
		if a != nil {
			old = a.hashes[typ]
		}
		if b != nil {
			cur = b.hashes[typ]
		}
		var changes []Change
		for name, v := range cur {
			switch ov, ok := old[name]; {
			case !ok:
				changes = append(changes, Change{Type: ShortType(typ), Name: name, Kind: Added})
			case ov != v:
				changes = append(changes, Change{Type: ShortType(typ), Name: name, Kind: Changed})
			}
		}
		for name := range old {
			if _, ok := cur[name]; !ok {
				changes = append(changes, Change{Type: ShortType(typ), Name: name, Kind: Removed})
			}
		}
		sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
		out = append(out, changes...)
	}
	return out
}
