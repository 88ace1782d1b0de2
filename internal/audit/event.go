// Package audit owns okproxy's audit trail: the event every answered request
// produces, the asynchronous batched writer with its local spool for database
// outages, and the queries and reports over stored events.
package audit

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one answered request (SPEC §6). JSON names are the machine field
// names of `okproxy audit query -o json`. Raw tokens are never part of it.
type Event struct {
	// ID makes replays from the spool idempotent; it is not shown in query output.
	ID            [16]byte  `json:"-"`
	Time          time.Time `json:"time"`
	RequestID     string    `json:"request_id"`
	Replica       string    `json:"replica"`
	Method        string    `json:"method"`
	Host          string    `json:"host"`
	Path          string    `json:"path"` // never the query string
	Status        int       `json:"status"`
	Decision      string    `json:"decision"` // allow, deny or error
	Reason        string    `json:"reason"`
	PolicyVersion int64     `json:"policy_version"`
	Rules         []string  `json:"rules"`  // matched rule names
	Rule          string    `json:"rule"`   // granting rule (denying rule for an explicit deny)
	Shadow        string    `json:"shadow"` // outcome of report-only rules, e.g. "deny:forbidden:new-export (changed)"
	Subject       string    `json:"subject"`
	UserID        string    `json:"user_id"`
	Email         string    `json:"email"`
	Groups        []string  `json:"groups"`
	ClientIP      string    `json:"client_ip"`
	UserAgent     string    `json:"user_agent"`
	JTI           string    `json:"jti"`
	ClientID      string    `json:"client_id"`
	LatencyMS     float64   `json:"latency_ms"`
}

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionError = "error"
)

// Sink is what the request path uses. The proxy calls Reserve before it
// forwards a request, so that an event that could be neither queued nor
// spooled refuses the request (503) instead of letting it through unaudited;
// Commit hands over the finished event and never blocks or fails. Record is
// Reserve followed by Commit, for responses the proxy makes itself.
//
// When Reserve or Record returns an error (ErrUnavailable for the Writer),
// the proxy answers 503 and passes that 503's own event to Commit without a
// reservation: it is kept in a small buffer and written once there is room,
// so even refused requests are audited with the status the client saw.
type Sink interface {
	Reserve() error
	Commit(e *Event)
	Record(e *Event) error
}

// storable makes every text field of e valid UTF-8 without NUL bytes, what
// PostgreSQL's text type accepts. Most fields are ASCII or come from JSON
// (already valid), but the User-Agent is the client's bytes: a header may
// carry obs-text, and one invalid byte would fail the COPY of the whole
// batch, sending every event in it on a detour through the spool (where
// JSON would turn the byte into U+FFFD anyway). Invalid sequences and NUL
// become U+FFFD here, once, so every path stores the same text. Slices
// shared with the caller are replaced, not modified.
func (e *Event) storable() {
	for _, p := range []*string{&e.RequestID, &e.Replica, &e.Method, &e.Host, &e.Path, &e.Decision, &e.Reason,
		&e.Rule, &e.Shadow, &e.Subject, &e.UserID, &e.Email, &e.ClientIP, &e.UserAgent, &e.JTI, &e.ClientID} {
		*p = storableText(*p)
	}
	e.Rules = storableList(e.Rules)
	e.Groups = storableList(e.Groups)
}

func storableText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func storableList(l []string) []string {
	for i, s := range l {
		if t := storableText(s); t != s {
			out := slices.Clone(l)
			for j := i; j < len(out); j++ {
				out[j] = storableText(out[j])
			}
			return out
		}
	}
	return l
}
