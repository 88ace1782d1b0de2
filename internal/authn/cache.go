package authn

import (
	"crypto/sha256"
	"sync"
	"time"
)

const (
	maxCacheShards  = 64
	minShardEntries = 16
	evictionSample  = 8
)

// tokenCache holds verified identities keyed by the SHA-256 of the raw
// token (never the token), each until its exp: no skew is added, so a
// token past exp is verified afresh, where the skew rules apply. An entry
// also dies with its signing key: once a refresh no longer lists the kid
// (Okta revoked the key), its tokens are verified afresh and refused.
//
// It is sharded by the first byte of the hash to keep lock contention low
// on the hot path, and bounded: a full shard evicts an expired entry if its
// sample finds one, else the sampled entry closest to expiry (the least
// valuable to keep). Go's randomised map iteration makes the sample
// random.
type tokenCache struct {
	shards   []cacheShard
	mask     byte
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]cacheEntry
	_  [32]byte // pad to 64 bytes: keep neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	id  *Identity
	exp int64  // unix nanoseconds
	kid string // signing key
}

// newTokenCache returns a cache of at most size entries (size > 0).
func newTokenCache(size int) *tokenCache {
	n := 1
	for n < maxCacheShards && n*2*minShardEntries <= size {
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: byte(n - 1), perShard: size / n}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(key [sha256.Size]byte) *cacheShard {
	return &c.shards[key[0]&c.mask]
}

// get returns the identity cached under key if it has not expired and
// keyLive still knows its signing key.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time, keyLive func(kid string) bool) (*Identity, bool) {
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now.UnixNano() >= e.exp || !keyLive(e.kid) {
		s.mu.Lock()
		if cur, ok := s.m[key]; ok && cur.exp == e.exp {
			delete(s.m, key)
		}
		s.mu.Unlock()
		return nil, false
	}
	return e.id, true
}

func (c *tokenCache) put(key [sha256.Size]byte, id *Identity, kid string, now time.Time) {
	exp := id.Expiry.UnixNano()
	nowNs := now.UnixNano()
	if nowNs >= exp {
		return // accepted inside the skew: not worth keeping
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		s.evictLocked(nowNs)
	}
	s.m[key] = cacheEntry{id: id, exp: exp, kid: kid}
}

func (s *cacheShard) evictLocked(nowNs int64) {
	var victim [sha256.Size]byte
	victimExp := int64(-1)
	n := 0
	for k, e := range s.m {
		if e.exp <= nowNs {
			delete(s.m, k)
			return
		}
		if victimExp < 0 || e.exp < victimExp {
			victim, victimExp = k, e.exp
		}
		if n++; n == evictionSample {
			break
		}
	}
	if victimExp >= 0 {
		delete(s.m, victim)
	}
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
