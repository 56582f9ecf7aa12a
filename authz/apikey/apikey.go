// Package apikey checks API keys for integration partners that have no
// identity provider. Keys are configured only as hashes (sha256 or
// sha512 of the key), each with its subject, tier, scopes and expiry;
// several keys may name one subject so that a key can be rotated with
// overlap.
//
// A presented key is hashed once per configured algorithm and the digest
// looked up; the final comparison of digests is constant-time. Timing of
// the lookup can only ever tell something about the digest of what the
// caller sent, never about a configured key.
package apikey

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"os"
	"time"
	"unsafe"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Key is one configured key (never the key itself).
type Key struct {
	ID      string
	Subject string
	Tier    string
	Scopes  []string
	Expires time.Time
	Revoked bool
	digest  []byte
	// id is the identity of every request presenting this key, built once.
	id *core.Identity
}

// Store holds the configured keys.
type Store struct {
	header string
	by256  map[[sha256.Size]byte]*Key
	by512  map[[sha512.Size]byte]*Key
}

// maxKeyLen bounds a presented key; longer input is not a key of ours.
const maxKeyLen = 512

// New builds the store from cfg, reading cfg.File when set.
func New(cfg *config.AuthzAPIKeys) (*Store, error) {
	all := append([]config.APIKey(nil), cfg.Keys...)
	if cfg.File != "" {
		more, err := ReadFile(string(cfg.File))
		if err != nil {
			return nil, config.Errors{{Path: "authz.apiKeys.file", Msg: err.Error()}}
		}
		all = append(all, more...)
	}
	var errs config.Errors
	config.ValidateAPIKeys("authz.apiKeys.keys", all, &errs)
	if errs.HasErrors() {
		if cfg.File != "" {
			// Indices run over keys, then the file's entries.
			for _, e := range errs {
				e.Msg += fmt.Sprintf(" (keys and %s together)", cfg.File)
			}
		}
		return nil, errs
	}
	s := &Store{header: cfg.Header, by256: map[[32]byte]*Key{}, by512: map[[64]byte]*Key{}}
	for _, k := range all {
		alg, digest, _ := config.ParseKeyHash(k.Hash)
		key := &Key{ID: k.ID, Subject: k.Subject, Tier: k.Tier, Scopes: k.Scopes, Expires: k.ExpiresAt.Time(), Revoked: k.Revoked, digest: digest}
		key.id = &core.Identity{
			Method:  contract.AuthMethodAPIKey,
			Subject: key.Subject,
			Tier:    key.Tier,
			Scopes:  key.Scopes,
			KeyID:   key.ID,
			Expires: key.Expires,
		}
		switch alg {
		case "sha256":
			s.by256[[32]byte(digest)] = key
		case "sha512":
			s.by512[[64]byte(digest)] = key
		}
	}
	return s, nil
}

// ReadFile reads a key file: a YAML document `keys: [...]` with the same
// entries as authz.apiKeys.keys. Unknown fields are errors.
func ReadFile(path string) ([]config.APIKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read key file: %v", err)
	}
	var doc struct {
		Keys []config.APIKey `yaml:"keys"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("key file %s: %v", path, err)
	}
	return doc.Keys, nil
}

// Header is the header keys are read from.
func (s *Store) Header() string { return s.header }

// Lookup finds the key presented in r. It returns CredentialsMissing when
// the header is absent, and APIKeyUnknown, APIKeyRevoked or APIKeyExpired
// for a key that does not pass.
func (s *Store) Lookup(r *core.Request, now time.Time, ex core.Explainer) (*core.Identity, core.Code) {
	v, ok := r.Headers[s.header]
	if !ok {
		return nil, core.CredentialsMissing
	}
	if v == "" || len(v) > maxKeyLen {
		if ex != nil {
			ex.Step("%s holds no plausible key (%d bytes)", s.header, len(v))
		}
		return nil, core.APIKeyUnknown
	}
	key := s.find(v)
	if key == nil {
		if ex != nil {
			ex.Step("%s: no configured key has this key's hash", s.header)
		}
		return nil, core.APIKeyUnknown
	}
	if key.Revoked {
		if ex != nil {
			ex.Step("API key %s (subject %q) is revoked", key.ID, key.Subject)
		}
		return nil, core.APIKeyRevoked
	}
	if !key.Expires.IsZero() && !now.Before(key.Expires) {
		if ex != nil {
			ex.Step("API key %s (subject %q) expired at %s", key.ID, key.Subject, key.Expires.Format(time.RFC3339))
		}
		return nil, core.APIKeyExpired
	}
	if ex != nil {
		ex.Step("API key %s matches: subject %q, tier %q, scopes %v", key.ID, key.Subject, key.Tier, key.Scopes)
	}
	return key.id, core.OK
}

func (s *Store) find(v string) *Key {
	if len(s.by256) > 0 {
		d := sha256.Sum256(unsafe.Slice(unsafe.StringData(v), len(v)))
		if k := s.by256[d]; k != nil && subtle.ConstantTimeCompare(k.digest, d[:]) == 1 {
			return k
		}
	}
	if len(s.by512) > 0 {
		d := sha512.Sum512(unsafe.Slice(unsafe.StringData(v), len(v)))
		if k := s.by512[d]; k != nil && subtle.ConstantTimeCompare(k.digest, d[:]) == 1 {
			return k
		}
	}
	return nil
}
