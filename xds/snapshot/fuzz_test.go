package snapshot

import (
	"bytes"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzPreEncoded: preEncoded parses wire bytes; on any input it must not
// panic, and for a real resource's encoding the shell must encode to the
// same bytes.
func FuzzPreEncoded(f *testing.F) {
	rc := &routev3.RouteConfiguration{Name: "routes/public", VirtualHosts: []*routev3.VirtualHost{{Name: "*", Domains: []string{"*"}}}}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rc)
	f.Add(b)
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		shell, err := preEncoded(&routev3.RouteConfiguration{}, in)
		if err != nil {
			return
		}
		var parsed routev3.RouteConfiguration
		if proto.Unmarshal(in, &parsed) != nil {
			return
		}
		canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&parsed)
		if err != nil || !bytes.Equal(canon, in) {
			return // not a canonical encoding; nothing to compare
		}
		out, err := proto.MarshalOptions{Deterministic: true}.Marshal(shell)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("shell of a canonical encoding re-encodes differently: %v", err)
		}
	})
}
