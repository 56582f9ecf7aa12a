package extproc

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"strings"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// bodyState is one direction's body as the stream has seen it.
type bodyState struct {
	// mode is how Envoy sends this body: what it announced in
	// protocol_config, or what gatehouse asked for in mode_override.
	mode extprocfilterv3.ProcessingMode_BodySendMode
	// want: a processor needs this body.
	want bool
	buf  []byte
	// held counts bytes of STREAMED chunks answered with an empty body,
	// to be sent on with the last chunk.
	held int
	// complete: the processors have run on the body (or skipped it).
	complete bool
	// passthrough: chunks go by untouched (over the limit, or a mode the
	// processors cannot work in).
	passthrough bool
	// ended: no more body messages may come for this direction.
	ended bool
	// withheld: earlier chunks were withheld, so the answer to the last
	// one must carry the whole body even when nothing changed.
	withheld bool
}

// step is what to do with one body message.
type step int

const (
	stepContinue step = iota // let the chunk through as it is
	stepHold                 // withhold the chunk (STREAMED): answer with an empty body
	stepReady                // the whole body is here: run the processors
	stepOver                 // over the limit (or partial): skip or reject
	stepEcho                 // FULL_DUPLEX_STREAMED: send the chunk back as it is
)

// add takes one body message. With stepReady it returns the whole body;
// with stepOver, the withheld bytes that must be sent on now (nil when
// none were withheld).
func (st *bodyState) add(b *extprocv3.HttpBody, limit int64) (step, []byte) {
	if st.mode == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		return stepEcho, nil
	}
	if !st.want || st.complete || st.passthrough {
		return stepContinue, nil
	}
	chunk := b.GetBody()
	switch st.mode {
	case extprocfilterv3.ProcessingMode_BUFFERED:
		// The whole body; end_of_stream is false only when trailers
		// follow.
		st.complete = true
		if int64(len(chunk)) > limit {
			st.passthrough = true
			return stepOver, nil
		}
		return stepReady, chunk
	case extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		// Without end_of_stream, Envoy stopped at its buffer limit and the
		// rest goes by unseen.
		st.complete = true
		if !b.GetEndOfStream() || int64(len(chunk)) > limit {
			st.passthrough = true
			return stepOver, nil
		}
		return stepReady, chunk
	}
	// STREAMED (or a body Envoy sends although it announced NONE): collect
	// the chunks, withholding them, until the last one.
	if int64(len(st.buf)+len(chunk)) > limit {
		st.complete, st.passthrough = true, true
		if st.held == 0 {
			return stepOver, nil
		}
		// The held chunks and this one, handed over with buf's array.
		st.buf = append(st.buf, chunk...)
		out := st.buf
		st.buf, st.held = nil, 0
		return stepOver, out
	}
	if !b.GetEndOfStream() {
		st.buf = append(st.buf, chunk...)
		st.held += len(chunk)
		return stepHold, nil
	}
	st.complete = true
	if st.held == 0 {
		return stepReady, chunk
	}
	st.buf = append(st.buf, chunk...)
	whole := st.buf
	st.buf, st.held, st.withheld = nil, 0, true
	return stepReady, whole
}

func bodyResponse(request bool, c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: c}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: c}}}
}

func clearBody() *extprocv3.CommonResponse {
	return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}
}

func replaceBody(b []byte) *extprocv3.CommonResponse {
	return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: b}}}
}

// echo answers a FULL_DUPLEX_STREAMED chunk by sending it back unchanged;
// the processors need whole bodies and do not run in that mode.
func echo(request bool, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	return bodyResponse(request, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
			Body: b.GetBody(), EndOfStream: b.GetEndOfStream(),
		}},
	}})
}

// isJSON reports whether a content type is JSON (application/json or a
// +json type). A missing content type counts: the scanner leaves a body
// that is not JSON untouched anyway.
func isJSON(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// encoding classifies a Content-Encoding: identity, gzip, or other (which
// redaction cannot read).
func encoding(ce string) string {
	switch strings.ToLower(strings.TrimSpace(ce)) {
	case "", "identity":
		return "identity"
	case "gzip", "x-gzip":
		return "gzip"
	}
	return "other"
}

var errTooLarge = errors.New("decoded body over the limit")

// gunzip decodes a gzip body of at most limit bytes once decoded, so that
// a small compressed body cannot expand without bound.
func gunzip(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errTooLarge
	}
	return out, nil
}
