package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// LLM headers steer the LLM-like upstream (LLM):
//
//	x-llm-usage: 120      the total_tokens the answer reports (default:
//	                      the request's max_tokens, else 50)
//	x-llm-cut: true       a stream ends (connection closed) before its
//	                      usage event
//	x-llm-pause: 300ms    wait this long before each stream event
//	x-llm-error: 503      answer with this status and an error body
//	                      without usage
//
// Every answer but an error also reports its usage in the response
// header x-llm-total-tokens (as some providers do), for budgets that read
// the cost from a header.
const (
	HeaderLLMUsage       = "x-llm-usage"
	HeaderLLMCut         = "x-llm-cut"
	HeaderLLMPause       = "x-llm-pause"
	HeaderLLMError       = "x-llm-error"
	HeaderLLMTotalTokens = "x-llm-total-tokens"
)

// LLM answers like an OpenAI-style chat completions API: a JSON request
// with max_tokens and stream; a JSON answer with usage, or with stream
// true a text/event-stream of delta events, then one event with usage
// (stream_options.include_usage), then data: [DONE]. Install it with
// Upstream.Handle(harness.LLM).
func LLM(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MaxTokens *uint64 `json:"max_tokens"`
		Stream    bool    `json:"stream"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(body, &req)
	usage := uint64(50)
	if req.MaxTokens != nil {
		usage = *req.MaxTokens
	}
	if v, err := strconv.ParseUint(r.Header.Get(HeaderLLMUsage), 10, 64); err == nil {
		usage = v
	}
	prompt := min(usage, 10)
	usageJSON := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, prompt, usage-prompt, usage)
	// Budget headers the upstream saw, echoed for the test to read.
	w.Header().Set("x-seen-budget-remaining", r.Header.Get("x-gatehouse-budget-remaining"))
	w.Header().Set("x-seen-budget-reserved", r.Header.Get("x-gatehouse-budget-reserved"))
	if code, err := strconv.Atoi(r.Header.Get(HeaderLLMError)); err == nil && code >= 400 && code <= 599 {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"error":{"type":"overloaded","message":"try again"}}`)
		return
	}
	w.Header().Set(HeaderLLMTotalTokens, strconv.FormatUint(usage, 10))
	if !req.Stream {
		w.Header().Set("content-type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":%s}`, usageJSON)
		return
	}
	pause, _ := time.ParseDuration(r.Header.Get(HeaderLLMPause))
	w.Header().Set("content-type", "text/event-stream")
	w.Header().Set("cache-control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	event := func(data string) bool {
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-r.Context().Done():
				return false
			}
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	for _, word := range []string{"hel", "lo"} {
		if !event(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + word + `"}}],"usage":null}`) {
			return
		}
	}
	if r.Header.Get(HeaderLLMCut) == "true" {
		// Abort the response: the client sees the stream cut short.
		panic(http.ErrAbortHandler)
	}
	if event(`{"object":"chat.completion.chunk","choices":[],"usage":` + usageJSON + `}`) {
		event("[DONE]")
	}
}
