// Package archtest holds tests that fail when a package imports what the
// architecture says it must not (docs/architecture.md): SQL stays in
// internal/store, the Okta SDK in internal/okta, the policy core stays pure.
package archtest
