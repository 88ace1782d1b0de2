package authn

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Refusing a token is meant to be cheap. An RSA verification costs
// 100–150 µs, so a client that keeps replaying one bad token (an expired
// one it never refreshed, or a forgery) would otherwise buy that much CPU
// per request. Two things keep the price down, neither of which can admit
// a token: claims no signature can repair are judged before the signature,
// and a token refused for a reason that cannot change (those claims, or a
// signature that failed under a published key) is remembered.

// unrepairable marks a refusal no later verification of the same token
// could turn into an acceptance.
type unrepairable struct{ error }

func (u unrepairable) Unwrap() error { return u.error }

// screen refuses, from the unverified payload, a token that is expired or
// was issued for another issuer or audience. Whatever the signature, such a
// token is refused; judging it first saves the RSA work. A payload that
// does not parse is left to the full verification, which says why.
func (v *Verifier) screen(payload []byte, now time.Time) error {
	var c struct {
		Iss json.RawMessage `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Exp json.RawMessage `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return nil
	}
	if iss, ok := stringValue(c.Iss); ok && iss != v.cfg.Issuer {
		return unrepairable{invalid("wrong issuer")}
	}
	if aud, ok := audience(c.Aud); ok && !v.acceptsAudience(aud) {
		return unrepairable{invalid("wrong audience")}
	}
	if exp, ok := numericDateValue(c.Exp); ok && now.After(exp.Add(v.cfg.ClockSkew)) {
		return unrepairable{invalid("token expired")}
	}
	return nil
}

// refusalMemory remembers tokens (by the same SHA-256 key as the cache)
// refused for good: their signature did not verify under a published key,
// or screen refused them. An entry holds for the key set it was judged
// against: any refresh installs a new one and the token is judged afresh. Bounded; a full map forgets an arbitrary
// entry (Go's map iteration order is random).
type refusalMemory struct {
	mu   sync.Mutex
	max  int
	m    map[[sha256.Size]byte]keptRefusal
	hits int64
}

type keptRefusal struct {
	keys *map[string][]jose.JSONWebKey
	err  error
}

func newRefusalMemory(max int) *refusalMemory {
	return &refusalMemory{max: max, m: make(map[[sha256.Size]byte]keptRefusal)}
}

// lookup returns the refusal remembered for key under the key set keys,
// or nil.
func (b *refusalMemory) lookup(key [sha256.Size]byte, keys *map[string][]jose.JSONWebKey) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[key]
	if !ok {
		return nil
	}
	if e.keys != keys {
		delete(b.m, key)
		return nil
	}
	b.hits++
	return e.err
}

func (b *refusalMemory) put(key [sha256.Size]byte, keys *map[string][]jose.JSONWebKey, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[key]; !ok && len(b.m) >= b.max {
		for k := range b.m {
			delete(b.m, k)
			break
		}
	}
	b.m[key] = keptRefusal{keys: keys, err: err}
}

func (b *refusalMemory) stats() (entries int, hits int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m), b.hits
}
