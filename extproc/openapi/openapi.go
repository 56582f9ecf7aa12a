// Package openapi checks requests (and, report-only, responses) against a
// route's OpenAPI 3 document with getkin/kin-openapi. A document is loaded,
// validated and compiled into a router once, when the config is prepared;
// a request then costs a route lookup and the schema checks only.
package openapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// LoadError is a problem with a document, with the line it is on when the
// parser knows it (1-based within the document; 0 when unknown).
type LoadError struct {
	Line int
	Msg  string
}

func (e *LoadError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Contract is one compiled document. It is immutable and safe for
// concurrent use.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
	// opts validate requests with bodies, noBody without; both carry the
	// document's format settings.
	opts, noBody *openapi3filter.Options
}

// Source is where a document comes from: inline data, or a file whose
// relative $refs may name other local files.
type Source struct {
	Data []byte
	// File is the document's path when it was read from a file; it anchors
	// relative $refs. Refs to URLs are never followed: loading config must
	// not reach the network.
	File string
}

var lineRE = regexp.MustCompile(`(?:yaml error: )?(?:yaml: )?line (\d+): `)

// Settings tune how a document is compiled.
type Settings struct {
	// BasePath, when set, replaces the paths of the document's servers.
	BasePath string
	// IgnoreFormats turns off the checks of string formats (email,
	// uuid, ...): the schema's other rules still apply.
	IgnoreFormats bool
}

// Load parses, validates and compiles a document.
func Load(ctx context.Context, src Source, set Settings) (*Contract, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	var (
		doc *openapi3.T
		err error
	)
	if src.File != "" {
		loader.IsExternalRefsAllowed = true
		loader.ReadFromURIFunc = localFilesOnly
		doc, err = loader.LoadFromDataWithPath(src.Data, &url.URL{Path: src.File})
	} else {
		doc, err = loader.LoadFromData(src.Data)
	}
	if err != nil {
		return nil, parseErr(err)
	}
	if doc.OpenAPI == "" {
		return nil, &LoadError{Msg: "not an OpenAPI 3 document: the openapi field (e.g. 3.0.3) is missing"}
	}
	if err := doc.Validate(loader.Context, openapi3.EnableMultiError()); err != nil {
		return nil, &LoadError{Msg: "invalid OpenAPI document: " + oneLine(err.Error(), 600)}
	}
	// Envoy has already matched the host; keep only the paths of the
	// servers (or the configured base path) for matching.
	shallow := *doc
	shallow.Servers = pathServers(doc.Servers, set.BasePath)
	router, err := gorillamux.NewRouter(&shallow)
	if err != nil {
		return nil, &LoadError{Msg: "cannot build a router from the document's paths: " + err.Error()}
	}
	c := &Contract{doc: doc, router: router}
	c.opts = newOptions(set)
	nb := *c.opts
	nb.ExcludeRequestBody = true
	c.noBody = &nb
	return c, nil
}

// localFilesOnly lets a file-based document $ref files beside it, and
// nothing else.
func localFilesOnly(l *openapi3.Loader, u *url.URL) ([]byte, error) {
	if u.Scheme != "" && u.Scheme != "file" || u.Host != "" {
		return nil, fmt.Errorf("refusing $ref to %s: only local files are followed", u.Redacted())
	}
	return openapi3.ReadFromFile(l, u)
}

func parseErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), "failed to unmarshal data: ")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.Replace(msg, m[0], "", 1)
	}
	return &LoadError{Line: line, Msg: "cannot parse the document: " + oneLine(msg, 400)}
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// pathServers keeps the path part of each server URL (variables and all),
// or uses basePath alone when it is set.
func pathServers(in openapi3.Servers, basePath string) openapi3.Servers {
	if basePath != "" {
		return openapi3.Servers{{URL: strings.TrimSuffix(basePath, "/")}}
	}
	var out openapi3.Servers
	seen := map[string]bool{}
	for _, s := range in {
		p := s.URL
		if i := strings.Index(p, "://"); i >= 0 {
			p = p[i+3:]
			if j := strings.IndexByte(p, '/'); j >= 0 {
				p = p[j:]
			} else {
				p = ""
			}
		}
		p = strings.TrimSuffix(p, "/")
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, &openapi3.Server{URL: p, Variables: s.Variables})
	}
	if len(out) == 0 {
		out = openapi3.Servers{{URL: ""}}
	}
	return out
}

// Request is what validation needs of an HTTP request.
type Request struct {
	Method    string
	Path      string // :path, with the query string
	Authority string
	Header    http.Header
	// Body is the whole body when BodyChecked, and ignored otherwise.
	Body        []byte
	BodyChecked bool
	// JSON are the departures from strict JSON a JSON body may take.
	JSON jsonx.Rules
}

// Violation is one way a request or response breaks the contract, in the
// shape of an RFC 9457 problem's "errors" member.
type Violation struct {
	// In is where: path, query, header, cookie, body, operation or
	// (responses) status.
	In string `json:"in"`
	// Name is the parameter's name, for parameters.
	Name string `json:"name,omitempty"`
	// Pointer is the JSON pointer (RFC 6901) of the failing body member.
	Pointer string `json:"pointer,omitempty"`
	// Detail says what is wrong, without echoing the value sent.
	Detail string `json:"detail"`
}

// Match remembers the operation a request matched, for validating its
// response.
type Match struct {
	input *openapi3filter.RequestValidationInput
}

// MaxViolations bounds the list a problem response carries.
const MaxViolations = 20

// newOptions are the validation options of a document.
func newOptions(set Settings) *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError: true,
		// Authentication is ext_authz's job; the contract checks shape only.
		AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
		SkipSettingDefaults: true,
		// Format checkers per validation, replacing kin-openapi's global
		// ones: see formats.go.
		SchemaValidationOptions: formatOptions(set.IgnoreFormats),
	}
}

// ValidateRequest checks r against the contract. The Match it returns
// (valid or not) is what ValidateResponse needs; it is nil when no
// operation matched.
func (c *Contract) ValidateRequest(ctx context.Context, r Request) (*Match, []Violation) {
	u, err := url.ParseRequestURI(r.Path)
	if err != nil {
		return nil, []Violation{{In: "path", Detail: "the request path is not a valid URI"}}
	}
	if esc := u.EscapedPath(); strings.Contains(esc, "%") {
		// %65 is e (RFC 3986 §6.2.2.2): decode the unreserved characters
		// before routing, as Envoy's normalize_path does, and keep every
		// other encoding for the parameters' one decoding.
		if norm := decodeUnreserved(esc); norm != esc {
			u.Path, _ = url.PathUnescape(norm)
			u.RawPath = norm
		}
	}
	hreq := &http.Request{
		Method: r.Method, URL: u, Host: r.Authority, Header: r.Header,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RequestURI: r.Path,
	}
	if hreq.Header == nil {
		hreq.Header = http.Header{}
	}
	if r.BodyChecked {
		hreq.Body = io.NopCloser(bytes.NewReader(r.Body))
		hreq.ContentLength = int64(len(r.Body))
	} else {
		hreq.Body = http.NoBody
	}
	route, params, err := c.router.FindRoute(hreq)
	if err != nil {
		detail := "no operation of the API matches " + r.Method + " " + u.Path
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			detail = "the API does not allow " + r.Method + " on " + u.Path
		}
		return nil, []Violation{{In: "operation", Detail: detail}}
	}
	// The router matched the encoded path, so that an encoded slash
	// stays inside its segment; the parameters are then validated as the
	// upstream reads them, decoded once.
	if vs := decodeParams(params); len(vs) > 0 {
		return nil, vs
	}
	opts := c.opts
	if !r.BodyChecked {
		opts = c.noBody
	}
	// A JSON body the validator and the upstream could read differently
	// is refused before the validator reads it: kin-openapi's decoder
	// reads the first of several texts and the last of duplicate names.
	var out []Violation
	if r.BodyChecked && isJSON(hreq.Header.Get("Content-Type")) {
		if v, bad := strictBody(r.Body, r.JSON); bad {
			out = append(out, v)
			opts = c.noBody
		}
	}
	in := &openapi3filter.RequestValidationInput{Request: hreq, PathParams: params, Route: route, Options: opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	m := &Match{input: in}
	if err != nil {
		out = violations(err, out)
	}
	return m, out
}

// decodeParams percent-decodes path parameters in place, exactly once
// (RFC 3986 §6.2.2.2: %34%32 is 42). A parameter holding an encoded slash
// or backslash is refused: decoded, it would move a segment boundary for
// whichever reader decodes before splitting the path; so is one that is a
// dot segment (. or .., written plain or encoded), which a reader that
// normalizes removes along with the segment before it.
func decodeParams(params map[string]string) []Violation {
	var out []Violation
	for name, raw := range params {
		if raw == "." || raw == ".." {
			// Left to the router (which matched it as a segment), a dot
			// segment would be removed by a reader that normalizes.
			out = append(out, Violation{In: "path", Name: name, Detail: "is a dot segment (. or ..), which would change the path's structure"})
			continue
		}
		if !strings.Contains(raw, "%") {
			continue
		}
		if containsFold(raw, "%2f") || containsFold(raw, "%5c") {
			out = append(out, Violation{In: "path", Name: name, Detail: "holds an encoded / or \\ (%2F, %5C), which would change the path's structure"})
			continue
		}
		dec, err := url.PathUnescape(raw)
		if err != nil {
			out = append(out, Violation{In: "path", Name: name, Detail: "holds an invalid percent-encoding"})
			continue
		}
		if dec == "." || dec == ".." {
			out = append(out, Violation{In: "path", Name: name, Detail: "is a dot segment (. or ..), which would change the path's structure"})
			continue
		}
		params[name] = dec
	}
	slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// decodeUnreserved decodes the percent-encoded unreserved characters
// (ALPHA, DIGIT, -, ., _, ~) of an escaped path and leaves the rest.
func decodeUnreserved(p string) string {
	var b []byte
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if c, ok := unhex(p[i+1], p[i+2]); ok && unreserved(c) {
				if b == nil {
					b = append(make([]byte, 0, len(p)), p[:i]...)
				}
				b = append(b, c)
				i += 2
				continue
			}
		}
		if b != nil {
			b = append(b, p[i])
		}
	}
	if b == nil {
		return p
	}
	return string(b)
}

func unhex(h, l byte) (byte, bool) {
	v := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			return c | 0x20 - 'a' + 10, true
		}
		return 0, false
	}
	a, ok1 := v(h)
	b, ok2 := v(l)
	return a<<4 | b, ok1 && ok2
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// strictBody checks a JSON body against rules; a body that is not JSON at
// all is left to the validator, which says so in its own words.
func strictBody(body []byte, rules jsonx.Rules) (Violation, bool) {
	err := jsonx.Check(body, rules)
	var se *jsonx.StrictError
	if err == nil || !errors.As(err, &se) {
		return Violation{}, false
	}
	switch {
	case errors.Is(se, jsonx.ErrTrailingData):
		return Violation{In: "body", Detail: "data follows the JSON text; a body is one JSON text (RFC 8259 §2)"}, true
	case errors.Is(se, jsonx.ErrDuplicateName):
		return Violation{In: "body", Pointer: se.Pointer, Detail: "this member is named twice in its object; names must be unique (I-JSON, RFC 7493 §2.3)"}, true
	case errors.Is(se, jsonx.ErrInvalidUTF8):
		return Violation{In: "body", Detail: fmt.Sprintf("the string at byte %d is not valid UTF-8; JSON text is UTF-8 (RFC 8259 §8.1)", se.Offset)}, true
	}
	return Violation{}, false
}

// isJSON reports whether a content type is one kin-openapi decodes as
// JSON: application/json or a +json type.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// ValidateResponse checks a response to the request m matched.
func (c *Contract) ValidateResponse(ctx context.Context, m *Match, status int, header http.Header, body []byte, bodyChecked bool) []Violation {
	if m == nil {
		return nil
	}
	opts := *c.opts
	opts.IncludeResponseStatus = true
	opts.ExcludeResponseBody = !bodyChecked
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: m.input, Status: status, Header: header, Options: &opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		return violations(err, nil)
	}
	return nil
}

// violations flattens kin-openapi's error tree into a bounded list. Only
// reasons and locations are kept, never the offending values: a problem
// response and a log line must not echo what a client sent.
func violations(err error, out []Violation) []Violation {
	if len(out) >= MaxViolations {
		return out
	}
	// Only a list at the top is flattened here: a list wrapped in a
	// RequestError is that error's cause, expanded at its location (leaf).
	if me, ok := err.(openapi3.MultiError); ok { //nolint:errorlint // see above
		for _, e := range me {
			out = violations(e, out)
		}
		return out
	}
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		v := Violation{In: "body"}
		if p := re.Parameter; p != nil {
			v.In, v.Name = p.In, p.Name
		}
		if re.Err == nil {
			v.Detail = re.Reason
			return append(out, clean(v))
		}
		return leaf(re.Err, v, re.Reason, out)
	}
	var rs *openapi3filter.ResponseError
	if errors.As(err, &rs) {
		v := Violation{In: "body"}
		if strings.Contains(rs.Reason, "status") {
			v.In = "status"
		} else if strings.Contains(rs.Reason, "header") {
			v.In = "header"
		}
		if rs.Err == nil {
			v.Detail = rs.Reason
			return append(out, clean(v))
		}
		return leaf(rs.Err, v, rs.Reason, out)
	}
	return append(out, clean(Violation{In: "operation", Detail: err.Error()}))
}

// leaf turns the cause of a request/response error into violations at v's
// location.
func leaf(err error, v Violation, reason string, out []Violation) []Violation {
	if me, ok := err.(openapi3.MultiError); ok { //nolint:errorlint // a list where it stands, as in violations
		for _, e := range me {
			if len(out) >= MaxViolations {
				break
			}
			out = leaf(e, v, reason, out)
		}
		return out
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		if v.In == "body" {
			v.Pointer = pointer(se.JSONPointer())
		}
		v.Detail = se.Reason
		if v.Detail == "" {
			v.Detail = "does not match the schema (" + se.SchemaField + ")"
		}
		return append(out, clean(v))
	}
	var pe *openapi3filter.ParseError
	if errors.As(err, &pe) {
		v.Detail = pe.Reason
		if v.Detail == "" && pe.Cause != nil {
			// The cause of a body parse error is the JSON decoder's
			// syntax error, which names a position, not the content.
			v.Detail = pe.Cause.Error()
		}
		if v.Detail == "" {
			v.Detail = "cannot be parsed"
		}
		if v.In == "body" {
			v.Detail = "the body cannot be parsed: " + v.Detail
		}
		return append(out, clean(v))
	}
	switch {
	case errors.Is(err, openapi3filter.ErrInvalidRequired):
		v.Detail = "is required but missing"
	case errors.Is(err, openapi3filter.ErrInvalidEmptyValue):
		v.Detail = "must not be empty"
	default:
		v.Detail = reason
		if v.Detail == "" {
			v.Detail = err.Error()
		}
	}
	return append(out, clean(v))
}

// pointer renders an RFC 6901 JSON pointer.
func pointer(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('/')
		p = strings.ReplaceAll(p, "~", "~0")
		b.WriteString(strings.ReplaceAll(p, "/", "~1"))
	}
	return b.String()
}

// ctEcho starts the part of kin-openapi's Content-Type complaint that
// quotes the media type received, which is what was sent, not a rule.
const ctEcho = "Content-Type has unexpected value"

func clean(v Violation) Violation {
	if i := strings.Index(v.Detail, ctEcho); i >= 0 {
		v.Detail = v.Detail[:i] + "Content-Type is not a media type the operation declares"
	}
	v.Detail = oneLine(v.Detail, 300)
	if v.Detail == "" {
		v.Detail = "does not match the API contract"
	}
	return v
}

// Operations lists "METHOD path" for every operation, sorted (for docs
// and tests).
func (c *Contract) Operations() []string {
	var out []string
	for p, item := range c.doc.Paths.Map() {
		for m := range item.Operations() {
			out = append(out, m+" "+p)
		}
	}
	slices.Sort(out)
	return out
}
