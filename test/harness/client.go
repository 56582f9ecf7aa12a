package harness

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HTTP1 is a client that speaks HTTP/1.1 to Envoy and never follows
// redirects (a redirect is an answer the tests look at).
func HTTP1() *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second, CheckRedirect: noRedirect}
}

// HTTP2 is a client that speaks cleartext HTTP/2 (h2c, prior knowledge)
// to Envoy.
func HTTP2() *http.Client {
	tr := &http.Transport{DisableCompression: true}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Response is a whole answer.
type Response struct {
	Status int
	Proto  string
	Header http.Header
	Body   []byte
}

// Echo decodes the body as the upstream's echo; ok is false when the body
// is not one (an answer of Envoy or gatehouse, not of the upstream).
func (r *Response) Echo() (Echo, bool) {
	var e Echo
	if json.Unmarshal(r.Body, &e) != nil || e.Upstream == "" {
		return Echo{}, false
	}
	return e, true
}

// Request is one request to send; Headers are "name: value" pairs.
type Request struct {
	Method  string
	URL     string
	Headers []string
	Body    string
	// Host overrides the :authority.
	Host string
}

// Send sends a request and reads the whole answer; a transport error fails
// the test.
func Send(t testing.TB, c *http.Client, r Request) *Response {
	t.Helper()
	resp, err := TrySend(c, r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	return resp
}

// TrySend is Send that returns the transport error.
func TrySend(c *http.Client, r Request) (*Response, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(method, r.URL, body)
	if err != nil {
		return nil, err
	}
	for _, h := range r.Headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if r.Host != "" {
		req.Host = r.Host
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, Body: b}, nil
}
