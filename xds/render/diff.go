package render

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/xds/translate"
)

// unit is the smallest piece a diff shows: a cluster, a load assignment,
// a listener, or one route of one virtual host. A route table of
// thousands of routes then diffs as the few routes that changed.
type unit struct {
	key   string // "route routes/public/api.example.com/orders"
	label string
	msg   proto.Message
	// table and pos place a route in its virtual host (first match
	// wins, so a route that moved is a change even when its fields are
	// not); table is "" for every other unit.
	table string
	pos   int
}

func units(res *translate.Resources) ([]unit, map[string]unit) {
	var list []unit
	add := func(key, label string, m proto.Message) {
		list = append(list, unit{key: key, label: label, msg: m, pos: -1})
	}
	for _, c := range res.Clusters {
		add("cluster "+c.GetName(), "cluster "+c.GetName(), c)
	}
	for _, e := range res.Endpoints {
		add("endpoints "+e.GetClusterName(), "endpoints "+e.GetClusterName(), e)
	}
	for _, l := range res.Listeners {
		add("listener "+l.GetName(), "listener "+l.GetName(), l)
	}
	for _, rc := range res.Routes {
		// The configuration's own fields, without its virtual hosts.
		shell := proto.Clone(rc).(*routev3.RouteConfiguration)
		shell.VirtualHosts = nil
		add("route_config "+rc.GetName(), "route configuration "+rc.GetName(), shell)
		for _, vh := range rc.GetVirtualHosts() {
			vs := proto.Clone(vh).(*routev3.VirtualHost)
			vs.Routes = nil
			add("vhost "+rc.GetName()+"/"+vh.GetName(), "virtual host "+vh.GetName()+" of "+rc.GetName(), vs)
			for i, r := range vh.GetRoutes() {
				// Position matters (first match wins), so it is part of
				// the route's identity in the diff.
				add(fmt.Sprintf("route %s/%s/%s", rc.GetName(), vh.GetName(), r.GetName()),
					fmt.Sprintf("route %s (#%d of virtual host %s, %s)", r.GetName(), i+1, vh.GetName(), rc.GetName()), r)
				list[len(list)-1].table, list[len(list)-1].pos = rc.GetName()+"/"+vh.GetName(), i
			}
		}
	}
	idx := make(map[string]unit, len(list))
	for _, u := range list {
		idx[u.key] = u
	}
	return list, idx
}

// Diff renders what changes from old to cur as unified-style diffs of
// YAML, one block per changed unit, and a summary line. It returns ""
// when nothing changes.
func Diff(old, cur *translate.Resources) (string, error) {
	oldList, oldIdx := units(old)
	curList, curIdx := units(cur)
	moved := movedRoutes(oldIdx, curList)
	var out bytes.Buffer
	var added, removed, changed int
	text := func(m proto.Message) ([]string, error) {
		b, err := Message(m, YAML)
		if err != nil {
			return nil, err
		}
		return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
	}
	for _, u := range curList {
		o, had := oldIdx[u.key]
		if had && proto.Equal(o.msg, u.msg) {
			if moved[u.key] {
				changed++
				fmt.Fprintf(&out, "~ %s: moved, was #%d\n", u.label, o.pos+1)
			}
			continue
		}
		nl, err := text(u.msg)
		if err != nil {
			return "", err
		}
		var ol []string
		if had {
			if ol, err = text(o.msg); err != nil {
				return "", err
			}
			changed++
			if moved[u.key] {
				fmt.Fprintf(&out, "~ %s: moved, was #%d\n", u.label, o.pos+1)
			} else {
				fmt.Fprintf(&out, "~ %s\n", u.label)
			}
		} else {
			added++
			fmt.Fprintf(&out, "+ %s\n", u.label)
		}
		writeLines(&out, lineDiff(ol, nl))
	}
	for _, u := range oldList {
		if _, ok := curIdx[u.key]; ok {
			continue
		}
		ol, err := text(u.msg)
		if err != nil {
			return "", err
		}
		removed++
		fmt.Fprintf(&out, "- %s\n", u.label)
		writeLines(&out, lineDiff(ol, nil))
	}
	if added+removed+changed == 0 {
		return "", nil
	}
	fmt.Fprintf(&out, "%d added, %d removed, %d changed\n", added, removed, changed)
	return out.String(), nil
}

// movedRoutes finds the routes whose order relative to the other routes
// of their virtual host changed: with first match wins, such a move can
// change which route a request takes even though no route's fields did.
// Routes added or removed around the others shift their positions but do
// not move them. Per virtual host, the routes in both sets that keep
// their relative order are a longest increasing subsequence of their old
// positions taken in the new order; every other common route moved.
func movedRoutes(oldIdx map[string]unit, curList []unit) map[string]bool {
	type entry struct {
		key    string
		oldPos int
	}
	byTable := map[string][]entry{}
	var tables []string
	for _, u := range curList {
		if u.table == "" {
			continue
		}
		o, ok := oldIdx[u.key]
		if !ok {
			continue
		}
		if _, seen := byTable[u.table]; !seen {
			tables = append(tables, u.table)
		}
		byTable[u.table] = append(byTable[u.table], entry{u.key, o.pos})
	}
	moved := map[string]bool{}
	for _, t := range tables {
		es := byTable[t]
		// Patience sorting: tails[k] is the index in es of the smallest
		// last element of an increasing run of length k+1.
		var tails []int
		prev := make([]int, len(es))
		for i, e := range es {
			k := sort.Search(len(tails), func(k int) bool { return es[tails[k]].oldPos >= e.oldPos })
			prev[i] = -1
			if k > 0 {
				prev[i] = tails[k-1]
			}
			if k == len(tails) {
				tails = append(tails, i)
			} else {
				tails[k] = i
			}
		}
		keep := make([]bool, len(es))
		if len(tails) > 0 {
			for i := tails[len(tails)-1]; i >= 0; i = prev[i] {
				keep[i] = true
			}
		}
		for i, e := range es {
			if !keep[i] {
				moved[e.key] = true
			}
		}
	}
	return moved
}

func writeLines(b *bytes.Buffer, lines []string) {
	for _, l := range lines {
		b.WriteString("    ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
}

// maxDiffCells bounds the LCS table; beyond it a unit is shown as
// wholly removed and added.
const maxDiffCells = 4 << 20

// lineDiff is a longest-common-subsequence line diff with two lines of
// context around each change.
func lineDiff(a, b []string) []string {
	if len(a)*len(b) > maxDiffCells {
		var out []string
		for _, l := range a {
			out = append(out, "- "+l)
		}
		for _, l := range b {
			out = append(out, "+ "+l)
		}
		return out
	}
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i]})
			i++
		default:
			ops = append(ops, op{'+', b[j]})
			j++
		}
	}
	const context = 2
	keep := make([]bool, len(ops))
	for k, o := range ops {
		if o.kind != ' ' {
			for c := max(0, k-context); c <= min(len(ops)-1, k+context); c++ {
				keep[c] = true
			}
		}
	}
	var out []string
	skipped := false
	for k, o := range ops {
		if !keep[k] {
			if !skipped {
				out = append(out, "  ...")
				skipped = true
			}
			continue
		}
		skipped = false
		out = append(out, string(o.kind)+" "+o.line)
	}
	return out
}
