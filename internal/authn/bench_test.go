package authn

import (
	"context"
	"testing"

	"github.com/okproxy/okproxy/internal/oktatest"
)

// BenchmarkVerifyCached is the hot path: a token seen before.
func BenchmarkVerifyCached(b *testing.B) {
	srv := shared(b)
	v := newVerifier(b, srv, nil)
	tok := srv.Mint(oktatest.Claims{Groups: []string{"Finance", "Auditors"}})
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	srv := shared(b)
	v := newVerifier(b, srv, nil)
	toks := make([]string, 64)
	for i := range toks {
		toks[i] = srv.Mint(oktatest.Claims{Groups: []string{"Finance", "Auditors"}})
		if _, err := v.Verify(context.Background(), toks[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(context.Background(), toks[i%len(toks)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkVerifyCold is a cache miss: header, RSA signature and claims.
func BenchmarkVerifyCold(b *testing.B) {
	srv := shared(b)
	v := newVerifier(b, srv, func(c *Config) { c.CacheSize = -1 })
	tok := srv.Mint(oktatest.Claims{Groups: []string{"Finance", "Auditors"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefuseReplayed: one bad token sent again and again, as a client
// that never refreshes its expired token, or a forger, does.
func BenchmarkRefuseReplayed(b *testing.B) {
	srv := shared(b)
	for _, f := range []oktatest.Forgery{oktatest.ForgeExpired, oktatest.ForgeWrongAudience, oktatest.ForgeBadSignature} {
		b.Run(f.String(), func(b *testing.B) {
			v := newVerifier(b, srv, nil)
			tok := srv.Forge(f, oktatest.Claims{})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
