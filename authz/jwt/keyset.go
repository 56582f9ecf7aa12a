package jwt

import (
	"context"
	"crypto"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"crypto/x509"

	"github.com/gatehouse/gatehouse/internal/config"
)

// errNotLoaded means the issuer's remote key set has never been fetched:
// a token cannot be judged yet (jwks_unavailable), which is not the same
// as a token naming a key the issuer does not have (token_unknown_kid).
var errNotLoaded = errors.New("jwt: key set not loaded yet")

// KeySet holds one issuer's verification keys: static keys (inline JWKS,
// JWKS file, PEM) and, when configured, a remote JWKS kept by jwkset —
// fetched in the background every refresh interval, fetched again (rate
// limited) when a token names an unknown kid, and served from cache while
// the endpoint is down or answers junk.
type KeySet struct {
	key     string // KeySetKey of its config
	name    string
	static  *jwkset.MemoryJWKSet
	nStatic int

	// Remote part; nil fields when the issuer has no JWKS URL.
	url       string // configured, or found by discovery
	discovery string // issuer URL to discover from ("" = none)
	timeout   time.Duration
	interval  time.Duration
	client    *http.Client
	log       *slog.Logger
	limiter   *rate.Limiter
	sf        singleflight.Group
	fetching  atomic.Bool // an unknown-kid fetch is in flight
	remote    atomic.Pointer[remoteSet]
	cancel    context.CancelFunc
	done      chan struct{}
	loaded    chan struct{}
	loadOnce  sync.Once
	lastOK    atomic.Int64 // unix nanos of the last good fetch
	nKeys     atomic.Int64
	fetchErrs atomic.Uint64
	errMu     sync.Mutex
	lastErr   string

	kf keyfunc.Keyfunc
}

type remoteSet struct {
	plain      jwkset.Storage // reads the cache only
	refreshing jwkset.Storage // reads and, for an unknown kid, fetches
}

// Health is a key set's state, for metrics and readiness.
type Health struct {
	Issuer string
	// Remote is false for issuers with static keys only.
	Remote bool
	// Loaded is true once the remote set was fetched at least once.
	Loaded bool
	// LastSuccess is the time of the last good fetch.
	LastSuccess time.Time
	// LastError is the last fetch error ("" when the last fetch was good).
	LastError string
	Keys      int
	Errors    uint64
}

// NewKeySet builds the key set of an issuer. Remote fetching starts with
// Start. A fingerprint of the returned set's config lets a reload keep it.
func NewKeySet(is *config.JWTIssuer, client *http.Client, log *slog.Logger) (*KeySet, error) {
	ks := &KeySet{
		key:      KeySetKey(is),
		name:     is.Name,
		static:   jwkset.NewMemoryStorage(),
		url:      is.JWKSURL,
		timeout:  is.FetchTimeout.D(),
		interval: is.RefreshInterval.D(),
		client:   client,
		log:      log,
		limiter:  rate.NewLimiter(rate.Every(is.UnknownKidInterval.D()), 1),
		loaded:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	if is.Discovery {
		ks.discovery = is.Issuer
	}
	ctx := context.Background()
	if is.JWKS != "" {
		if err := ks.addJWKS([]byte(is.JWKS)); err != nil {
			return nil, &config.FieldError{Path: "jwks", Msg: err.Error()}
		}
	}
	if is.JWKSFile != "" {
		b, err := os.ReadFile(string(is.JWKSFile))
		if err != nil {
			return nil, &config.FieldError{Path: "jwksFile", Msg: fmt.Sprintf("cannot read: %v", err)}
		}
		if err := ks.addJWKS(b); err != nil {
			return nil, &config.FieldError{Path: "jwksFile", Msg: err.Error()}
		}
	}
	for i, pk := range is.PublicKeys {
		key, err := parsePublicKey(pk.PEM)
		if err != nil {
			return nil, &config.FieldError{Path: config.Path("publicKeys").Index(i).Field("pem"), Msg: err.Error()}
		}
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: pk.KID}})
		if err != nil {
			return nil, &config.FieldError{Path: config.Path("publicKeys").Index(i).Field("pem"), Msg: fmt.Sprintf("unsupported key: %v", err)}
		}
		if err := ks.static.KeyWrite(ctx, jwk); err != nil {
			return nil, err
		}
		ks.nStatic++
	}
	if ks.url == "" && ks.discovery == "" {
		ks.loadOnce.Do(func() { close(ks.loaded) })
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: storage{ks}})
	if err != nil {
		return nil, err
	}
	ks.kf = kf
	return ks, nil
}

func (ks *KeySet) addJWKS(b []byte) error {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("not a JWKS document: %v", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("the JWKS holds no keys")
	}
	for i, m := range set.Keys {
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return fmt.Errorf("key %d: %v", i, err)
		}
		if _, ok := jwk.Key().(crypto.PublicKey); !ok || m.KTY == jwkset.KtyOct {
			return fmt.Errorf("key %d: only public keys verify tokens", i)
		}
		if err := ks.static.KeyWrite(context.Background(), jwk); err != nil {
			return err
		}
		ks.nStatic++
	}
	return nil
}

func parsePublicKey(s string) (any, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("is not a PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("a %q PEM block is not a public key; use PUBLIC KEY", block.Type)
}

// Start begins fetching the remote key set in the background (discovery
// first when configured); it returns at once. Stop ends it.
func (ks *KeySet) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	ks.cancel = cancel
	if ks.url == "" && ks.discovery == "" {
		close(ks.done)
		return
	}
	go func() {
		defer close(ks.done)
		ks.run(ctx)
	}()
}

// Stop ends background fetching and waits for it.
func (ks *KeySet) Stop() {
	if ks.cancel != nil {
		ks.cancel()
		<-ks.done
	}
}

// WaitLoaded waits until the key set can verify tokens (its remote part
// fetched once), or ctx ends.
func (ks *KeySet) WaitLoaded(ctx context.Context) error {
	select {
	case <-ks.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jwt issuer %s: key set not loaded: %s", ks.name, ks.Health().LastError)
	}
}

func (ks *KeySet) run(ctx context.Context) {
	backoff := func(i int) time.Duration {
		d := time.Second << min(i, 5)
		return min(d, 30*time.Second)
	}
	url := ks.url
	for i := 0; url == ""; i++ {
		u, err := discover(ctx, ks.client, ks.discovery, ks.timeout)
		if err == nil {
			url = u
			break
		}
		ks.recordErr(fmt.Errorf("discovery: %w", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff(i)):
		}
	}
	mem := &trackedStorage{MemoryJWKSet: jwkset.NewMemoryStorage(), ks: ks}
	hs, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    ks.client,
		Ctx:                       ctx,
		HTTPTimeout:               ks.timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       func(_ context.Context, err error) { ks.recordErr(err) },
		RefreshInterval:           ks.interval,
		Storage:                   mem,
	})
	if err != nil {
		ks.recordErr(err)
		return
	}
	// The gate in storage.KeyRead rate-limits unknown-kid fetches without
	// ever blocking a Check; this client's own limiter only lets it through.
	refreshing, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{url: hs},
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		ks.recordErr(err)
		return
	}
	ks.remote.Store(&remoteSet{plain: hs, refreshing: refreshing})
	// The first fetch ran inside NewStorageFromHTTP, before the set could
	// be read through ks.remote: only now may a Check rely on it.
	if ks.lastOK.Load() != 0 {
		ks.loadOnce.Do(func() { close(ks.loaded) })
	}
	// Until the first fetch succeeds, retry with backoff rather than wait a
	// whole refresh interval; afterwards jwkset's own ticker refreshes.
	for i := 0; ks.lastOK.Load() == 0; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff(i)):
		}
		ks.fetchNow(ctx)
	}
	<-ctx.Done()
}

// fetchNow makes jwkset fetch the set again: reading a key id that cannot
// exist through the refreshing client is its public way to do that.
func (ks *KeySet) fetchNow(ctx context.Context) {
	r := ks.remote.Load()
	if r == nil {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	_, _ = r.refreshing.KeyRead(fctx, "\x00gatehouse-refresh")
}

func (ks *KeySet) recordErr(err error) {
	ks.fetchErrs.Add(1)
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	ks.errMu.Lock()
	ks.lastErr = msg
	ks.errMu.Unlock()
	if ks.log != nil {
		ks.log.Warn("jwks fetch failed; serving the cached keys", "issuer", ks.name, "err", msg)
	}
}

func (ks *KeySet) recordOK(n int) {
	ks.lastOK.Store(time.Now().UnixNano())
	ks.nKeys.Store(int64(n))
	ks.errMu.Lock()
	ks.lastErr = ""
	ks.errMu.Unlock()
	if ks.remote.Load() != nil {
		ks.loadOnce.Do(func() { close(ks.loaded) })
	}
}

// Health reports the key set's state.
func (ks *KeySet) Health() Health {
	h := Health{Issuer: ks.name, Remote: ks.url != "" || ks.discovery != "", Keys: ks.nStatic, Errors: ks.fetchErrs.Load()}
	ks.errMu.Lock()
	h.LastError = ks.lastErr
	ks.errMu.Unlock()
	if !h.Remote {
		h.Loaded = true
		return h
	}
	if t := ks.lastOK.Load(); t != 0 && ks.remote.Load() != nil {
		h.Loaded = true
		h.LastSuccess = time.Unix(0, t)
		h.Keys += int(ks.nKeys.Load())
	}
	return h
}

// trackedStorage is jwkset's in-memory storage, noting each good fetch:
// jwkset replaces the whole set only after fetching and parsing it.
type trackedStorage struct {
	*jwkset.MemoryJWKSet
	ks *KeySet
}

func (t *trackedStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if err := t.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	t.ks.recordOK(len(given))
	return nil
}

// storage is the jwkset.Storage keyfunc reads: static keys first, then
// the cached remote set, then — for an unknown kid, at most once per
// unknownKidInterval and coalesced across concurrent Checks — a fetch.
type storage struct{ ks *KeySet }

func (s storage) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	ks := s.ks
	if k, err := ks.static.KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	r := ks.remote.Load()
	if r == nil {
		if ks.url != "" || ks.discovery != "" {
			return jwkset.JWK{}, errNotLoaded
		}
		return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, kid)
	}
	if k, err := r.plain.KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	// A fetch in flight is joined whatever the limiter says: during a key
	// rotation every token naming the new kid waits for the one fetch
	// instead of failing while it runs.
	if ks.fetching.Load() || ks.limiter.Allow() {
		_, _, _ = ks.sf.Do("fetch", func() (any, error) {
			ks.fetching.Store(true)
			defer ks.fetching.Store(false)
			// Not the caller's context: other Checks wait on this fetch.
			ks.fetchNow(context.Background())
			return nil, nil
		})
		if k, err := r.plain.KeyRead(ctx, kid); err == nil {
			return k, nil
		}
	}
	if ks.lastOK.Load() == 0 {
		return jwkset.JWK{}, errNotLoaded
	}
	return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, kid)
}

func (s storage) KeyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	out, _ := s.ks.static.KeyReadAll(ctx)
	if r := s.ks.remote.Load(); r != nil {
		more, err := r.plain.KeyReadAll(ctx)
		if err == nil {
			out = append(out, more...)
		}
	} else if s.ks.url != "" || s.ks.discovery != "" {
		return nil, errNotLoaded
	}
	// Keys with a kid verify only tokens naming it.
	keep := out[:0]
	for _, k := range out {
		if k.Marshal().KID == "" {
			keep = append(keep, k)
		}
	}
	return keep, nil
}

var errReadOnly = errors.New("jwt: key set is read-only")

func (s storage) KeyDelete(context.Context, string) (bool, error) { return false, errReadOnly }
func (s storage) KeyReplaceAll(context.Context, []jwkset.JWK) error {
	return errReadOnly
}
func (s storage) KeyWrite(context.Context, jwkset.JWK) error { return errReadOnly }
func (s storage) JSON(ctx context.Context) (json.RawMessage, error) {
	return s.JSONPublic(ctx)
}
func (s storage) JSONPublic(ctx context.Context) (json.RawMessage, error) {
	m, err := s.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}
func (s storage) JSONPrivate(context.Context) (json.RawMessage, error) { return nil, errReadOnly }
func (s storage) JSONWithOptions(ctx context.Context, _ jwkset.JWKMarshalOptions, _ jwkset.JWKValidateOptions) (json.RawMessage, error) {
	return s.JSONPublic(ctx)
}
func (s storage) Marshal(ctx context.Context) (jwkset.JWKSMarshal, error) {
	keys, err := s.KeyReadAll(ctx)
	if err != nil {
		return jwkset.JWKSMarshal{}, err
	}
	var m jwkset.JWKSMarshal
	for _, k := range keys {
		m.Keys = append(m.Keys, k.Marshal())
	}
	return m, nil
}
func (s storage) MarshalWithOptions(ctx context.Context, _ jwkset.JWKMarshalOptions, _ jwkset.JWKValidateOptions) (jwkset.JWKSMarshal, error) {
	return s.Marshal(ctx)
}

// discover reads the jwks_uri of an OpenID Provider from its
// /.well-known/openid-configuration, checking that the document is the
// issuer's own (OpenID Connect Discovery 1.0, section 4.3).
func discover(ctx context.Context, c *http.Client, issuer string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("%s: not a discovery document: %v", u, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("%s: names issuer %q, not %q", u, doc.Issuer, issuer)
	}
	if !strings.HasPrefix(doc.JWKSURI, "https://") && !strings.HasPrefix(doc.JWKSURI, "http://") {
		return "", fmt.Errorf("%s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}
