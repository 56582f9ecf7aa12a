package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

func all(t testing.TB, paths ...string) *Redactor {
	t.Helper()
	r, err := New(Options{Paths: paths, Email: true, Cards: true, NationalIDs: true, BearerTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		in    string
		want  string
		kinds map[Kind]int
	}{
		{name: "nothing", in: `{"a":1,"b":"hello","c":[true,false,null]}`, want: `{"a":1,"b":"hello","c":[true,false,null]}`},
		{name: "email", in: `{"contact":"write to jane.doe+x@mail.example.com today"}`,
			want: `{"contact":"write to [REDACTED:email] today"}`, kinds: map[Kind]int{KindEmail: 1}},
		{name: "internationalized email", in: `{"a":"mail info@müller.de or josé@exämple.рф","b":"“jane@example.com”—ok"}`,
			want: `{"a":"mail [REDACTED:email] or [REDACTED:email]","b":"“[REDACTED:email]”—ok"}`, kinds: map[Kind]int{KindEmail: 3}},
		{name: "not an email", in: `{"a":"user@localhost","b":"@handle","c":"a@b.c"}`,
			want: `{"a":"user@localhost","b":"@handle","c":"a@b.c"}`},
		{name: "card keeps last four", in: `{"pan":"4111 1111 1111 1111"}`,
			want: `{"pan":"**** **** **** 1111"}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "card dashes", in: `{"pan":"card 5500-0000-0000-0004 ok"}`,
			want: `{"pan":"card ****-****-****-0004 ok"}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "card failing luhn", in: `{"pan":"4111111111111112"}`, want: `{"pan":"4111111111111112"}`},
		{name: "card as number", in: `{"pan":4242424242424242,"n":1234567890123}`,
			want: `{"pan":"************4242","n":1234567890123}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "digits glued to letters", in: `{"id":"tx4111111111111111"}`, want: `{"id":"tx4111111111111111"}`},
		{name: "two cards in a run", in: `{"p":"4111111111111111 4242424242424242"}`,
			want: `{"p":"************1111 ************4242"}`, kinds: map[Kind]int{KindCard: 2}},
		{name: "card before a glued number", in: `{"a":"card 4111 1111 1111 1111 2nd try"}`,
			want: `{"a":"card **** **** **** 1111 2nd try"}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "card after a glued number", in: `{"a":"order A1 4111111111111111"}`,
			want: `{"a":"order A1 ************1111"}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "card after many numbers", in: `{"a":"` + strings.Repeat("12 ", 30) + `4111111111111111"}`,
			want: `{"a":"` + strings.Repeat("12 ", 30) + `************1111"}`, kinds: map[Kind]int{KindCard: 1}},
		{name: "ssn in a run", in: `{"a":"ssn 123-45-6789 5 days late","b":"call 555 123 45 6789"}`,
			want: `{"a":"ssn [REDACTED:national-id] 5 days late","b":"call 555 123 45 6789"}`, kinds: map[Kind]int{KindNationalID: 1}},
		{name: "ssn", in: `{"ssn":"123-45-6789","bad":"000-12-3456","devil":"666-12-3456"}`,
			want: `{"ssn":"[REDACTED:national-id]","bad":"000-12-3456","devil":"666-12-3456"}`, kinds: map[Kind]int{KindNationalID: 1}},
		{name: "bearer", in: `{"h":"Authorization: Bearer abc123.def-456_ghi"}`,
			want: `{"h":"Authorization: Bearer [REDACTED]"}`, kinds: map[Kind]int{KindBearer: 1}},
		{name: "bearer prose", in: `{"h":"the bearer of this letter"}`, want: `{"h":"the bearer of this letter"}`},
		{name: "jwt", in: `{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}`,
			want: `{"t":"[REDACTED:jwt]"}`, kinds: map[Kind]int{KindJWT: 1}},
		{name: "escaped email is decoded first", in: `{"e":"jane\u0040example.com"}`,
			want: `{"e":"[REDACTED:email]"}`, kinds: map[Kind]int{KindEmail: 1}},
		{name: "escapes kept in rewritten string", in: `{"e":"a\"b\n jane@example.com \u00e9"}`,
			want: `{"e":"a\"b\n [REDACTED:email] é"}`, kinds: map[Kind]int{KindEmail: 1}},
		{name: "key holding an email", in: `{"jane@example.com":1}`,
			want: `{"[REDACTED:email]":1}`, kinds: map[Kind]int{KindEmail: 1}},
		{name: "path", paths: []string{"$.user.password"}, in: `{"user":{"name":"x","password":"hunter2"},"password":"top"}`,
			want: `{"user":{"name":"x","password":"[REDACTED]"},"password":"top"}`, kinds: map[Kind]int{KindPath: 1}},
		{name: "path selects container", paths: []string{"$.secret"}, in: `{"secret":{"a":[1,2,{"b":"jane@example.com"}]},"x":2}`,
			want: `{"secret":"[REDACTED]","x":2}`, kinds: map[Kind]int{KindPath: 1}},
		{name: "path wildcard index", paths: []string{"$.items[*].token"}, in: `{"items":[{"token":"a"},{"token":"b","x":1},{"y":"token"}]}`,
			want: `{"items":[{"token":"[REDACTED]"},{"token":"[REDACTED]","x":1},{"y":"token"}]}`, kinds: map[Kind]int{KindPath: 2}},
		{name: "path index", paths: []string{"$.items[1]"}, in: `{"items":["a","b","c"]}`,
			want: `{"items":["a","[REDACTED]","c"]}`, kinds: map[Kind]int{KindPath: 1}},
		{name: "descendant", paths: []string{"$..ssn"}, in: `{"a":{"b":[{"ssn":1},{"c":{"ssn":"x"}}]},"ssn":null}`,
			want: `{"a":{"b":[{"ssn":"[REDACTED]"},{"c":{"ssn":"[REDACTED]"}}]},"ssn":"[REDACTED]"}`, kinds: map[Kind]int{KindPath: 3}},
		{name: "bracket name", paths: []string{"$['x-api-key']"}, in: `{"x-api-key":"k","x":"y"}`,
			want: `{"x-api-key":"[REDACTED]","x":"y"}`, kinds: map[Kind]int{KindPath: 1}},
		{name: "member wildcard", paths: []string{"$.creds.*"}, in: `{"creds":{"a":1,"b":[2]},"c":3}`,
			want: `{"creds":{"a":"[REDACTED]","b":"[REDACTED]"},"c":3}`, kinds: map[Kind]int{KindPath: 2}},
		{name: "escaped key matches path", paths: []string{"$.pass"}, in: `{"p\u0061ss":"x"}`,
			want: `{"p\u0061ss":"[REDACTED]"}`, kinds: map[Kind]int{KindPath: 1}},
		{name: "whitespace kept", paths: []string{"$.a"}, in: " {\n \"a\" : 1 ,\n \"b\" : [ ] } \n",
			want: " {\n \"a\" : \"[REDACTED]\" ,\n \"b\" : [ ] } \n", kinds: map[Kind]int{KindPath: 1}},
		{name: "scalar root", in: `"jane@example.com"`, want: `"[REDACTED:email]"`, kinds: map[Kind]int{KindEmail: 1}},
		{name: "byte order mark", in: "\xef\xbb\xbf{\"e\":\"jane@example.com\"}",
			want: "\xef\xbb\xbf{\"e\":\"[REDACTED:email]\"}", kinds: map[Kind]int{KindEmail: 1}},
		{name: "invalid utf-8 untouched when clean", in: "{\"a\":\"\xff\xfe\"}", want: "{\"a\":\"\xff\xfe\"}"},
		{name: "invalid utf-8 replaced when rewritten", in: "{\"a\":\"\xff jane@example.com\"}",
			want: `{"a":"\ufffd [REDACTED:email]"}`, kinds: map[Kind]int{KindEmail: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := all(t, tc.paths...)
			got, counts, err := r.Redact([]byte(tc.in))
			if err != nil {
				t.Fatalf("Redact(%q) error %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("Redact(%q) = %s; want %s", tc.in, got, tc.want)
			}
			for k := range numKinds {
				if counts[k] != tc.kinds[k] {
					t.Errorf("Redact(%q) counts[%v] = %d; want %d", tc.in, k, counts[k], tc.kinds[k])
				}
			}
			if json.Valid(bytes.TrimPrefix([]byte(tc.in), []byte(bom))) && !json.Valid(bytes.TrimPrefix(got, []byte(bom))) {
				t.Errorf("Redact(%q) = %s, which is not valid JSON", tc.in, got)
			}
		})
	}
}

func TestRedactUnchangedReturnsInput(t *testing.T) {
	in := []byte(`{"a":"nothing here","n":[1,2,3]}`)
	got, _, err := all(t).Redact(in)
	if err != nil || &got[0] != &in[0] {
		t.Errorf("Redact of a clean body should return the input itself (err %v)", err)
	}
}

func TestRedactNotJSON(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `{"a":}`, `{"a" 1}`, `[1,]`, `{"a":1,}`, `[1 2]`, `"abc`, `"\x"`, "\"a\x01\"",
		`-`, `1.`, `1e`, `tru`, `{1:2}`, `[}`, `{]`, `<html>jane@example.com</html>`,
		`"\ud800`, `{"a":"b"`, "\xef\xbb\xbf", "\xef\xbb\xbf\xef\xbb\xbf{}",
	} {
		r := all(t, "$.a", "$..b")
		got, counts, err := r.Redact([]byte(in))
		if !errors.Is(err, ErrNotJSON) {
			t.Errorf("Redact(%q) error %v; want ErrNotJSON", in, err)
		}
		if string(got) != in || counts.Total() != 0 {
			t.Errorf("Redact(%q) = %q (%d masked); want the body unchanged", in, got, counts.Total())
		}
		if json.Valid(bytes.TrimPrefix([]byte(in), []byte(bom))) {
			t.Errorf("test case %q is valid JSON", in)
		}
	}
}

func TestRedactDeepNesting(t *testing.T) {
	// Far deeper than encoding/json accepts: the stack is on the heap.
	const depth = 200_000
	in := strings.Repeat(`{"a":[`, depth) + `"jane@example.com"` + strings.Repeat(`]}`, depth)
	got, counts, err := all(t, "$..zzz").Redact([]byte(in))
	if err != nil {
		t.Fatalf("Redact(deep) error %v", err)
	}
	if counts[KindEmail] != 1 || bytes.Contains(got, []byte("jane@")) {
		t.Errorf("Redact(deep) did not mask the e-mail at depth %d", depth)
	}
	if !bytes.HasPrefix(got, []byte(`{"a":[{"a":[`)) || !bytes.HasSuffix(got, []byte(`]}]}`)) {
		t.Errorf("Redact(deep) changed the structure")
	}
}

func TestCompilePath(t *testing.T) {
	for _, bad := range []string{"", "a.b", "$", "$.", "$..", "$.a[", "$.a[x]", "$.a[-1]", "$.a['b", "$.a b", "$['']", "$.a.[0]"} {
		if _, err := compilePath(bad); err == nil {
			t.Errorf("compilePath(%q) = nil error; want one", bad)
		}
	}
	for _, good := range []string{"$.a", "$..a", "$.a[0].b", "$['a.b']", `$["a"]`, "$.a[*]", "$.*", "$..*", "$..[0]", "$..['x y']"} {
		if _, err := compilePath(good); err != nil {
			t.Errorf("compilePath(%q) = %v; want nil", good, err)
		}
	}
}

func TestNationalIDPatterns(t *testing.T) {
	r, err := New(Options{NationalIDPatterns: []*regexp.Regexp{regexp.MustCompile(`\b[A-Z]{2}\d{6}[A-D]\b`)}}) // UK NINO
	if err != nil {
		t.Fatal(err)
	}
	got, counts, err := r.Redact([]byte(`{"nino":"QQ123456C","x":"QQ12"}`))
	if err != nil || string(got) != `{"nino":"[REDACTED:national-id]","x":"QQ12"}` || counts[KindNationalID] != 1 {
		t.Errorf("Redact = %s, %v, %v", got, counts, err)
	}
}

func TestLuhn(t *testing.T) {
	for n, want := range map[string]bool{
		"4111111111111111": true, "5500000000000004": true, "340000000000009": true, "6011000000000004": true,
		"4111111111111112": false, "1234567812345678": false,
	} {
		if got := luhn([]byte(n)); got != want {
			t.Errorf("luhn(%s) = %v; want %v", n, got, want)
		}
	}
}

// sample builds a realistic JSON API response of about n bytes with a
// sprinkling of secrets.
func sample(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"uuid":"6f1c2d3e-4b5a-4c6d-8e7f-%012d","name":"Customer number %d","active":true,`+
			`"balance":%d.25,"tags":["retail","eu-west","priority"],"address":{"street":"%d Long Street","city":"Springfield","zip":"%05d"},`+
			`"note":"Called on 2024-03-0%d about the renewal; follow up next week."`, i, i, i, i*37, i, i%99999, i%9)
		if i%10 == 0 {
			fmt.Fprintf(&b, `,"email":"user%d@example.com","card":"4111 1111 1111 1111"`, i)
		}
		b.WriteByte('}')
	}
	b.WriteString(`],"next":null}`)
	return b.Bytes()
}

// cpuSeconds is the process's user+system CPU time. The benchmarks report
// throughput per CPU second besides wall time: the machine is shared, and
// wall time measures the neighbours as much as the code.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func benchRedact(b *testing.B, r *Redactor, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	c0 := cpuSeconds()
	for b.Loop() {
		if _, _, err := r.Redact(body); err != nil {
			b.Fatal(err)
		}
	}
	if cpu := cpuSeconds() - c0; cpu > 0 {
		b.ReportMetric(float64(b.N)*float64(len(body))/1e6/cpu, "MB/cpu-s")
	}
}

func BenchmarkRedact64KiB(b *testing.B) {
	benchRedact(b, all(b, "$.data[*].address.street", "$..password"), sample(64<<10))
}

func BenchmarkRedact64KiBClean(b *testing.B) {
	body := bytes.ReplaceAll(sample(64<<10), []byte("@"), []byte("-"))
	body = bytes.ReplaceAll(body, []byte("4111 1111 1111 1111"), []byte("n/a"))
	benchRedact(b, all(b), body)
}

// BenchmarkRedact64KiBCleanDuplicatesAllowed is the clean benchmark
// without the duplicate-name check, for its cost (same-run ratio).
func BenchmarkRedact64KiBCleanDuplicatesAllowed(b *testing.B) {
	body := bytes.ReplaceAll(sample(64<<10), []byte("@"), []byte("-"))
	body = bytes.ReplaceAll(body, []byte("4111 1111 1111 1111"), []byte("n/a"))
	r, err := New(Options{Email: true, Cards: true, NationalIDs: true, BearerTokens: true, JSON: jsonx.Rules{AllowDuplicateNames: true}})
	if err != nil {
		b.Fatal(err)
	}
	benchRedact(b, r, body)
}

func BenchmarkEncodingJSONRoundTrip64KiB(b *testing.B) {
	// The library alternative, for scale: decode into any and encode again.
	body := sample(64 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRedactStrict: a body its readers could read differently is refused
// unchanged, saying which rule it breaks (the caller then answers 502);
// each rule can be relaxed, and a relaxed body is masked all through.
func TestRedactStrict(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		rules   jsonx.Rules
		want    string
		wantErr error
	}{
		{name: "two texts", in: `{"secret":"s1"} {"secret":"s2","e":"jane@example.com"}`, wantErr: jsonx.ErrTrailingData},
		{name: "text then junk", in: `{"e":"jane@example.com"} x`, wantErr: jsonx.ErrTrailingData},
		{name: "text then closer", in: `{"a":1}}`, wantErr: jsonx.ErrTrailingData},
		{name: "number then number", in: `01`, wantErr: jsonx.ErrTrailingData},
		{name: "duplicate", in: `{"secret":"s1","secret":"s2"}`, wantErr: jsonx.ErrDuplicateName},
		{name: "duplicate by escape, nested", in: `{"o":{"k":1,"\u006b":2}}`, wantErr: jsonx.ErrDuplicateName},
		{name: "same names in siblings", in: `[{"k":1},{"k":2}]`, want: `[{"k":1},{"k":2}]`},
		{name: "sequence allowed", in: `{"secret":"s1"} {"secret":"s2","e":"jane@example.com"}` + "\n",
			rules: jsonx.Rules{AllowTrailingData: true},
			want:  `{"secret":"[REDACTED]"} {"secret":"[REDACTED]","e":"[REDACTED:email]"}` + "\n"},
		{name: "junk after a sequence still refused", in: `{"e":"jane@example.com"} {} x`,
			rules: jsonx.Rules{AllowTrailingData: true}, wantErr: jsonx.ErrTrailingData},
		{name: "duplicates allowed, all masked", in: `{"secret":"s1","secret":"s2"}`, rules: jsonx.Rules{AllowDuplicateNames: true},
			want: `{"secret":"[REDACTED]","secret":"[REDACTED]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Options{Paths: []string{"$.secret"}, Email: true, JSON: tt.rules})
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := r.Redact([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Redact(%q) error %v; want %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				tt.want = tt.in // refused bodies come back unchanged
			}
			if string(got) != tt.want {
				t.Errorf("Redact(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
