package authn

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

// fakeClock is an injectable clock; tests move it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFake(tb testing.TB, opts oktatest.Options) *oktatest.Server {
	tb.Helper()
	s, err := oktatest.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// newVerifier builds a Verifier for srv with the default audience, then
// applies edit.
func newVerifier(tb testing.TB, srv *oktatest.Server, edit func(*Config)) *Verifier {
	tb.Helper()
	cfg := Config{Issuer: srv.Issuer(), Audiences: []string{oktatest.DefaultAudience}}
	if edit != nil {
		edit(&cfg)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	return v
}

var (
	sharedOnce sync.Once
	sharedSrv  *oktatest.Server
	sharedErr  error
)

// shared is one fake for tests that neither rotate keys nor count fetches:
// RSA key generation is the slowest part of a fake, and fuzz workers each
// need one. It lives until the test binary exits.
func shared(tb testing.TB) *oktatest.Server {
	tb.Helper()
	sharedOnce.Do(func() { sharedSrv, sharedErr = oktatest.New() })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return sharedSrv
}

// wantInvalid fails unless err wraps ErrInvalidToken, mentions want, and
// does not leak the token.
func wantInvalid(tb testing.TB, err error, tok, want string) {
	tb.Helper()
	if !errors.Is(err, ErrInvalidToken) {
		tb.Fatalf("err = %v, want ErrInvalidToken", err)
	}
	if !strings.Contains(err.Error(), want) {
		tb.Errorf("err = %q, want it to mention %q", err, want)
	}
	if tok != "" {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 8 && strings.Contains(err.Error(), part) {
				tb.Errorf("error leaks part of the token: %q", err)
			}
		}
	}
}
