package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/okproxy/okproxy/internal/policy"
)

// messages are the client-facing texts. They never say which groups a route
// requires or why exactly a token failed: that detail goes to the log.
var messages = map[policy.Reason]string{
	policy.ReasonUnauthorized:      "a bearer token is required",
	policy.ReasonInvalidToken:      "the access token is invalid",
	policy.ReasonForbidden:         "access to this resource is denied",
	policy.ReasonUserInactive:      "access to this resource is denied",
	policy.ReasonInsufficientScope: "the access token lacks a required scope",
	policy.ReasonQuotaExceeded:     "request quota exceeded; retry later",
	policy.ReasonBadRequest:        "the request is malformed or not accepted by the proxy (path, method, headers or body)",
	policy.ReasonBadGateway:        "the upstream service is unreachable",
	policy.ReasonGatewayTimeout:    "the upstream service timed out",
	policy.ReasonUnavailable:       "the proxy cannot serve requests right now",
}

// StatusFor is the HTTP status serve answers with for a reason (`rules
// test` reports the same).
func StatusFor(r policy.Reason) int {
	switch r {
	case policy.ReasonOK, policy.ReasonQuotaUnchecked:
		return http.StatusOK
	case policy.ReasonUnauthorized, policy.ReasonInvalidToken:
		return http.StatusUnauthorized
	case policy.ReasonForbidden, policy.ReasonInsufficientScope, policy.ReasonUserInactive:
		return http.StatusForbidden
	case policy.ReasonQuotaExceeded:
		return http.StatusTooManyRequests
	case policy.ReasonBadRequest:
		return http.StatusBadRequest
	case policy.ReasonBadGateway:
		return http.StatusBadGateway
	case policy.ReasonGatewayTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusServiceUnavailable
}

// errorCode is the "error" field: user_inactive is reported as forbidden so
// a caller learns nothing about their directory status.
func errorCode(r policy.Reason) string {
	if r == policy.ReasonUserInactive {
		return string(policy.ReasonForbidden)
	}
	return string(r)
}

type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// writeError writes the proxy's own JSON answer with its WWW-Authenticate.
func writeError(w http.ResponseWriter, reason policy.Reason, requestID string) {
	h := w.Header()
	switch reason {
	case policy.ReasonUnauthorized:
		h.Set("WWW-Authenticate", `Bearer`)
	case policy.ReasonInvalidToken:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case policy.ReasonInsufficientScope:
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-Id", requestID)
	w.WriteHeader(StatusFor(reason))
	b, _ := json.Marshal(errorBody{Error: errorCode(reason), Message: messages[reason], RequestID: requestID})
	w.Write(append(b, '\n'))
}

// setRateLimitHeaders writes the RateLimit-* headers (and Retry-After when
// the caller is out of budget).
func setRateLimitHeaders(h http.Header, q QuotaDecision) {
	reset := int64(q.Reset.Seconds() + 0.999)
	if reset < 1 {
		reset = 1
	}
	h.Set("RateLimit-Limit", strconv.FormatInt(q.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(q.Remaining, 10))
	h.Set("RateLimit-Reset", strconv.FormatInt(reset, 10))
	if !q.Allowed {
		h.Set("Retry-After", strconv.FormatInt(reset, 10))
	}
}
