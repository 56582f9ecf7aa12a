package harness

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream is an HTTP server behind Envoy. By default it echoes what it
// received as JSON (Echo); request headers steer it:
//
//	x-echo-status: 503        answer with this status
//	x-echo-delay: 300ms       wait this long before answering
//	x-echo-body: text         answer with this body
//	x-echo-content-type: t    ... of this content type (default text/plain)
//	x-echo-header: name=value add this response header (repeatable)
//
// A test may replace the answer with Handle. Every request is recorded.
type Upstream struct {
	Name string
	Addr string

	mu      sync.Mutex
	seen    []Echo
	handler http.HandlerFunc
	broken  bool
}

// Echo is what the upstream saw of one request (and the body it answers
// by default).
type Echo struct {
	Upstream string              `json:"upstream"`
	Method   string              `json:"method"`
	Path     string              `json:"path"` // as received, with the query
	Host     string              `json:"host"`
	Proto    string              `json:"proto"`
	Headers  map[string][]string `json:"headers"` // lower-case names
	Body     string              `json:"body"`
}

// Header returns the first value of a (lower-case) header.
func (e Echo) Header(name string) string {
	if v := e.Headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// StartUpstream starts an upstream on a free loopback port; broken makes it
// answer 500 to everything.
func StartUpstream(t testing.TB, name string, broken bool) *Upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{Name: name, Addr: l.Addr().String(), broken: broken}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return u
}

// Handle replaces the default answer (nil restores it). The request is
// still recorded first, with its body read.
func (u *Upstream) Handle(h http.HandlerFunc) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

// Seen returns the requests received so far.
func (u *Upstream) Seen() []Echo {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Echo(nil), u.seen...)
}

// Count is how many requests were received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// Last returns the last request received (the zero Echo when none).
func (u *Upstream) Last() Echo {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return Echo{}
	}
	return u.seen[len(u.seen)-1]
}

// Reset forgets the requests received so far.
func (u *Upstream) Reset() {
	u.mu.Lock()
	u.seen = nil
	u.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	e := Echo{Upstream: u.Name, Method: r.Method, Path: r.RequestURI, Host: r.Host, Proto: r.Proto, Headers: map[string][]string{}, Body: string(body)}
	for k, v := range r.Header {
		e.Headers[strings.ToLower(k)] = v
	}
	u.mu.Lock()
	u.seen = append(u.seen, e)
	h, broken := u.handler, u.broken
	u.mu.Unlock()
	if d, err := time.ParseDuration(r.Header.Get("x-echo-delay")); err == nil && d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if h != nil {
		// The handler reads the body too (it was read to record it).
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
		return
	}
	status := http.StatusOK
	if broken {
		status = http.StatusInternalServerError
	}
	if s, err := strconv.Atoi(r.Header.Get("x-echo-status")); err == nil && s >= 200 && s <= 599 {
		status = s
	}
	w.Header().Set("x-upstream", u.Name)
	for _, h := range r.Header.Values("x-echo-header") {
		if k, v, ok := strings.Cut(h, "="); ok {
			w.Header().Add(k, v)
		}
	}
	if b := r.Header.Get("x-echo-body"); b != "" {
		ct := r.Header.Get("x-echo-content-type")
		if ct == "" {
			ct = "text/plain"
		}
		w.Header().Set("content-type", ct)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, b)
		return
	}
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
