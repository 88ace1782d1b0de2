package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/snapshot"
)

// discardSink is an audit sink that keeps nothing: the handler benchmark
// measures the request path, the audit writer is benchmarked on its own.
type discardSink struct{}

func (discardSink) Reserve() error            { return nil }
func (discardSink) Commit(*audit.Event)       {}
func (discardSink) Record(*audit.Event) error { return nil }

func benchUpstream(b *testing.B) *url.URL {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	b.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	return u
}

func benchRules(n int) []policy.Rule {
	rules := make([]policy.Rule, 0, n)
	for i := 0; i < n-1; i++ {
		rules = append(rules, policy.Rule{Name: fmt.Sprintf("svc-%d", i), Path: fmt.Sprintf("/svc%d/**", i), Methods: []string{"GET"},
			Allow: []policy.GroupRef{{Name: fmt.Sprintf("Team%d", i)}}, Deny: []policy.GroupRef{{Name: "Contractors"}}, Enabled: true})
	}
	return append(rules, policy.Rule{Name: "bench", Path: "/bench", Methods: []string{"GET"}, Allow: []policy.GroupRef{{Name: "Finance"}}, Enabled: true})
}

// drive sends b.N requests through h in parallel, as an HTTP server would
// hand them over (no client or network in the loop): each goroutine's
// requests carry the context ConnContext gives a connection.
func drive(b *testing.B, h http.Handler, token string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine is one keep-alive client connection.
		conn := ConnContext(context.Background(), nil)
		for pb.Next() {
			req := httptest.NewRequestWithContext(conn, "GET", "/bench", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
			io.Copy(io.Discard, w.Body)
		}
	})
}

// BenchmarkBareReverseProxy is the baseline: httputil.ReverseProxy with the
// same transport and buffer pool, same upstream, same request bytes (the
// bearer token is sent and forwarded), no checks.
func BenchmarkBareReverseProxy(b *testing.B) {
	u := benchUpstream(b)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: NewTransport(TransportConfig{}), BufferPool: BufferPool()}
	iss, err := oktatest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	drive(b, rp, iss.Mint(oktatest.Claims{Subject: "load@example.com", Groups: []string{"Finance", "Team7", "Team9"}}))
}

// BenchmarkHandlerCachedToken is okproxy's request path with a cached token,
// 200 rules, and an audit sink that discards.
func BenchmarkHandlerCachedToken(b *testing.B) {
	benchHandler(b, benchUpstream(b), nil)
}

// benchHandler drives okproxy's handler (cached token, 200 rules, metrics,
// identity headers; audit events discarded) towards upstream over transport
// (nil: the real one).
func benchHandler(b *testing.B, upstream *url.URL, transport http.RoundTripper) {
	iss, err := oktatest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	v, err := authn.New(context.Background(), authn.Config{Issuer: iss.Issuer(), Audiences: []string{"api://default"}})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	p, err := policy.Compile(benchRules(200))
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{Upstream: upstream, Transport: transport, Verifier: v,
		Snapshots: &staticSnap{&snapshot.Snapshot{PolicyVersion: 1, Policy: p}}, Audit: discardSink{}})
	if err != nil {
		b.Fatal(err)
	}
	drive(b, h, iss.Mint(oktatest.Claims{Subject: "load@example.com", Groups: []string{"Finance", "Team7", "Team9"}}))
}

// cannedTransport answers every request from memory after serialising its
// headers (what a real transport writes), so the two benchmarks below
// measure the proxies' own work without sockets, the kernel or an upstream:
// the part of a request that okproxy adds to a bare ReverseProxy.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Write(io.Discard)
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: r, ContentLength: 3,
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: io.NopCloser(strings.NewReader("ok\n"))}, nil
}

// BenchmarkInMemoryBare: a bare ReverseProxy over cannedTransport.
func BenchmarkInMemoryBare(b *testing.B) {
	u, _ := url.Parse("http://upstream.invalid")
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: cannedTransport{}, BufferPool: BufferPool()}
	iss, err := oktatest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	drive(b, rp, iss.Mint(oktatest.Claims{Subject: "load@example.com", Groups: []string{"Finance", "Team7", "Team9"}}))
}

// BenchmarkInMemoryHandler: okproxy's handler over cannedTransport. Its
// difference to BenchmarkInMemoryBare is okproxy's own cost per request.
func BenchmarkInMemoryHandler(b *testing.B) {
	u, _ := url.Parse("http://upstream.invalid")
	benchHandler(b, u, cannedTransport{})
}
