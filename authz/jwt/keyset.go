package jwt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// errNotLoaded means the issuer's remote key set has never been fetched:
// a token cannot be judged yet (jwks_unavailable), which is not the same
// as a token naming a key the issuer does not have (token_unknown_kid).
var errNotLoaded = errors.New("jwt: key set not loaded yet")

// KeySet is one issuer's remote key set (jwksURL, or OIDC discovery),
// kept by jwkset: fetched in the background every refresh interval,
// fetched again (rate limited) when a token names an unknown kid, on
// demand (Refresh, Kick), and served from cache while the endpoint is
// down or answers junk. A KeySet outlives config reloads that leave its
// issuer's remote settings alone (see KeySetKey); static keys are not part
// of it.
//
// What jwkset does not do, KeySet adds around it: a response size cap
// (cappedClient), a refusal of a fetched set with no usable key (it would
// otherwise replace the cached keys with nothing), a refusal of a plain
// http:// jwks_uri from an https issuer's discovery document, and a
// revision that moves when a fetch removes or replaces a key, so that the
// verified-token cache drops what those keys verified.
type KeySet struct {
	key  string // KeySetKey of its config
	name string
	iss  string
	algs map[string]bool

	url               string // configured jwksURL ("" with discovery)
	discovery         string // issuer URL to discover from ("" = none)
	allowLoopbackHTTP bool
	timeout           time.Duration
	interval          time.Duration
	client            *http.Client // JWKS fetches, capped at maxJWKSSize
	discClient        *http.Client // discovery (capped by discover itself)
	log               *slog.Logger
	audit             audit.Recorder
	limiter           *rate.Limiter
	sf                singleflight.Group
	fetching          atomic.Bool // an unknown-kid fetch is in flight
	refreshMu         sync.Mutex  // one forced refresh at a time
	remote            atomic.Pointer[remoteSet]
	kick              chan struct{}
	cancel            context.CancelFunc
	done              chan struct{}
	loaded            chan struct{}
	loadOnce          sync.Once

	// rev moves when a fetch removes or replaces a key: a verification
	// made at another revision may rest on a key that is gone.
	rev      atomic.Uint64
	lastOK   atomic.Int64 // unix nanos of the last good fetch
	nKeys    atomic.Int64
	failures [len(failReasons)]atomic.Uint64
	errMu    sync.Mutex
	lastErr  string
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
	// Errors counts failed fetches by reason (the Fail* constants).
	Errors map[string]uint64
}

// KeySetKey identifies an issuer's remote key configuration: two configs
// with the same key can share a KeySet. Static keys are left out: they
// are read again at every load.
func KeySetKey(is *config.JWTIssuer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%t\x00%t\x00%v\x00%v\x00%v\x00%v\x00%d", is.Name, is.Issuer, is.JWKSURL, is.Discovery,
		is.AllowLoopbackHTTPJWKS, is.Algorithms, is.RefreshInterval, is.UnknownKidInterval, is.FetchTimeout, is.MaxJWKSSize)
	return b.String()
}

// hasRemote reports whether the issuer's keys are fetched.
func hasRemote(is *config.JWTIssuer) bool { return is.JWKSURL != "" || is.Discovery }

// NewKeySet builds the remote key set of an issuer (one with a jwksURL or
// discovery). Fetching starts with Start.
func NewKeySet(is *config.JWTIssuer, o Options) *KeySet {
	ks := &KeySet{
		key:               KeySetKey(is),
		name:              is.Name,
		iss:               is.Issuer,
		algs:              algSet(is.Algorithms),
		url:               is.JWKSURL,
		allowLoopbackHTTP: is.AllowLoopbackHTTPJWKS,
		timeout:           is.FetchTimeout.D(),
		interval:          is.RefreshInterval.D(),
		client:            cappedClient(o.Client, int64(is.MaxJWKSSize)),
		discClient:        o.Client,
		log:               o.Logger,
		audit:             o.Audit,
		limiter:           rate.NewLimiter(rate.Every(is.UnknownKidInterval.D()), 1),
		kick:              make(chan struct{}, 1),
		loaded:            make(chan struct{}),
		done:              make(chan struct{}),
	}
	if is.Discovery {
		ks.discovery = is.Issuer
	}
	return ks
}

func algSet(algs []config.JWTAlgorithm) map[string]bool {
	m := make(map[string]bool, len(algs))
	for _, a := range algs {
		m[string(a)] = true
	}
	return m
}

// Start begins fetching the key set in the background (discovery first
// when configured); it returns at once. Stop ends it.
func (ks *KeySet) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	ks.cancel = cancel
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

// WaitLoaded waits until the key set can verify tokens (fetched once, with
// at least one usable key), or ctx ends.
func (ks *KeySet) WaitLoaded(ctx context.Context) error {
	select {
	case <-ks.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jwt issuer %s: key set not loaded: %s", ks.name, ks.Health().LastError)
	}
}

// Kick asks the background loop to fetch the key set now; it does not
// wait. It is what SIGHUP does.
func (ks *KeySet) Kick() {
	select {
	case ks.kick <- struct{}{}:
	default:
	}
}

// Refresh fetches the key set now and returns the fetch's error, if any
// (the cached keys then keep serving). It is the admin endpoint's forced
// refresh: a key the issuer removed stops verifying, and the tokens it
// verified leave the verified-token cache, without waiting for the
// refresh interval. Before the first fetch (discovery still failing, say)
// it only kicks the background loop.
func (ks *KeySet) Refresh(ctx context.Context) error {
	if ks.remote.Load() == nil {
		ks.Kick()
		msg := ks.Health().LastError
		if msg == "" {
			msg = "first fetch still in progress"
		}
		return fmt.Errorf("%w: %s", errNotLoaded, msg)
	}
	ks.refreshMu.Lock()
	defer ks.refreshMu.Unlock()
	return ks.fetchNow(ctx)
}

func (ks *KeySet) run(ctx context.Context) {
	backoff := func(i int) time.Duration {
		d := time.Second << min(i, 5)
		return min(d, 30*time.Second)
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-ks.kick:
		}
		return true
	}
	url := ks.url
	for i := 0; url == ""; i++ {
		u, err := discover(ctx, ks.discClient, ks.discovery, ks.timeout, ks.allowLoopbackHTTP)
		if err == nil {
			url = u
			break
		}
		ks.recordErr(ctx, err)
		if !wait(backoff(i)) {
			return
		}
	}
	hs, err := ks.newStorage(ctx, url, ks.interval)
	if err != nil {
		ks.recordErr(ctx, err)
		return
	}
	// The gate in KeySet.keyRead rate-limits unknown-kid fetches without
	// ever blocking a Check; this client's own limiter only lets it through.
	refreshing, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{url: hs},
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		ks.recordErr(ctx, err)
		return
	}
	ks.remote.Store(&remoteSet{plain: hs, refreshing: refreshing})
	// The first fetch ran inside newStorage, before the set could be read
	// through ks.remote: only now may a Check rely on it.
	if ks.lastOK.Load() != 0 {
		ks.loadOnce.Do(func() { close(ks.loaded) })
	}
	// Until the first fetch succeeds, retry with backoff rather than wait a
	// whole refresh interval; afterwards jwkset's own ticker refreshes.
	// These fetches run under ctx, so that Stop does not wait for one.
	for i := 0; ks.lastOK.Load() == 0; i++ {
		if !wait(backoff(i)) {
			return
		}
		_ = ks.fetchNow(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ks.kick:
			_ = ks.fetchNow(ctx)
		}
	}
}

// newStorage is jwkset's HTTP storage of url over the capped client,
// refreshed every interval (0: never), its first fetch done.
func (ks *KeySet) newStorage(ctx context.Context, url string, interval time.Duration) (jwkset.Storage, error) {
	return jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    ks.client,
		Ctx:                       ctx,
		HTTPTimeout:               ks.timeout,
		NoErrorReturnFirstHTTPReq: interval > 0,
		RefreshErrorHandler:       ks.recordErr,
		RefreshInterval:           interval,
		Storage:                   &trackedStorage{MemoryJWKSet: jwkset.NewMemoryStorage(), ks: ks},
	})
}

// Probe fetches the key set once, discovery included, as the first fetch
// of serve would, and returns why serve would refuse it. Nothing runs in
// the background; it is for `gatehouse validate --fetch-keys`.
func (ks *KeySet) Probe(ctx context.Context) error {
	url := ks.url
	if url == "" {
		u, err := discover(ctx, ks.discClient, ks.discovery, ks.timeout, ks.allowLoopbackHTTP)
		if err != nil {
			return err
		}
		url = u
	}
	_, err := ks.newStorage(ctx, url, 0)
	if err != nil {
		return plainErr(err)
	}
	return nil
}

// fetchShared fetches the set once for every caller asking at the same
// time (a flood of tokens naming a new kid makes one request).
func (ks *KeySet) fetchShared() {
	_, _, _ = ks.sf.Do("fetch", func() (any, error) {
		ks.fetching.Store(true)
		defer ks.fetching.Store(false)
		// Not a caller's context: other Checks wait on this fetch.
		return nil, ks.fetchNow(context.Background())
	})
}

// outcomeKey carries a *fetchOutcome in the context of one fetch, so that
// the caller that asked for it learns its result: jwkset reports both
// (through the error handler and the storage) with the context it was
// given, while its own ticker's fetches carry none.
type outcomeKey struct{}

type fetchOutcome struct {
	done bool
	err  error
}

// fetchNow makes jwkset fetch the set again and returns the result:
// reading a key id that cannot exist through the refreshing client is its
// public way to do that.
func (ks *KeySet) fetchNow(ctx context.Context) error {
	r := ks.remote.Load()
	if r == nil {
		return errNotLoaded
	}
	out := &fetchOutcome{}
	fctx, cancel := context.WithTimeout(context.WithValue(ctx, outcomeKey{}, out), ks.timeout)
	defer cancel()
	_, _ = r.refreshing.KeyRead(fctx, "\x00gatehouse-refresh")
	if !out.done {
		return errors.New("jwt: the fetch did not complete")
	}
	return out.err
}

func setOutcome(ctx context.Context, err error) {
	if out, ok := ctx.Value(outcomeKey{}).(*fetchOutcome); ok {
		out.done, out.err = true, err
	}
}

// recordErr counts, logs and remembers a failed fetch. It is jwkset's
// refresh error handler, and reports ks's own discovery failures.
func (ks *KeySet) recordErr(ctx context.Context, err error) {
	err = plainErr(err)
	setOutcome(ctx, err)
	reason := failReason(err)
	ks.failures[slices.Index(failReasons[:], reason)].Add(1)
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	ks.errMu.Lock()
	ks.lastErr = msg
	ks.errMu.Unlock()
	if ks.log == nil {
		return
	}
	if ks.lastOK.Load() != 0 {
		ks.log.Warn("jwks fetch failed; the last good keys keep serving", "issuer", ks.name, "reason", reason, "err", msg)
	} else {
		ks.log.Warn("jwks fetch failed; the issuer has no keys yet and its tokens are refused as jwks_unavailable", "issuer", ks.name, "reason", reason, "err", msg)
	}
}

// recordOK notes a good fetch of n usable keys, and what it changed.
func (ks *KeySet) recordOK(ctx context.Context, n int, added, removed, skipped []string) {
	setOutcome(ctx, nil)
	ks.lastOK.Store(time.Now().UnixNano())
	ks.nKeys.Store(int64(n))
	ks.errMu.Lock()
	ks.lastErr = ""
	ks.errMu.Unlock()
	if ks.remote.Load() != nil {
		ks.loadOnce.Do(func() { close(ks.loaded) })
	}
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	detail := fmt.Sprintf("issuer %s: %d keys", ks.name, n)
	if len(added) > 0 {
		detail += "; added " + kidList(added)
	}
	if len(removed) > 0 {
		detail += "; removed " + kidList(removed) + " (tokens they verified leave the cache)"
	}
	if len(skipped) > 0 {
		detail += "; ignored " + kidList(skipped) + " (unusable)"
	}
	if ks.log != nil {
		ks.log.Info("jwks keys changed", "issuer", ks.name, "detail", detail)
	}
	if ks.audit != nil {
		ks.audit.Record(audit.Event{Kind: audit.KindJWKSChange, Issuer: ks.iss, Detail: detail})
	}
}

// Health reports the key set's state.
func (ks *KeySet) Health() Health {
	h := Health{Issuer: ks.name, Remote: true, Errors: make(map[string]uint64, len(failReasons))}
	for i, r := range failReasons {
		h.Errors[r] = ks.failures[i].Load()
	}
	ks.errMu.Lock()
	h.LastError = ks.lastErr
	ks.errMu.Unlock()
	if t := ks.lastOK.Load(); t != 0 && ks.remote.Load() != nil {
		h.Loaded = true
		h.LastSuccess = time.Unix(0, t)
		h.Keys = int(ks.nKeys.Load())
	}
	return h
}

// plainErr unwraps the refusals KeySet makes itself (a set without a
// usable key, a body over the cap) from jwkset's wording around them,
// which would call a refused set "failed to delete all keys from
// storage"; their own message says it all.
func plainErr(err error) error {
	var nu *noUsableKeyError
	if errors.As(err, &nu) {
		return nu
	}
	var tl *tooLargeError
	if errors.As(err, &tl) {
		return tl
	}
	return err
}

// noUsableKeyError is a fetched JWKS without one key that can verify a
// token of the issuer: answered as a failed fetch, so that the last good
// keys keep serving (and, at start-up, the issuer stays not ready).
type noUsableKeyError struct {
	n       int
	reasons []string
}

func (e *noUsableKeyError) Error() string {
	if e.n == 0 {
		return "jwt: the JWKS holds no keys"
	}
	return fmt.Sprintf("jwt: none of the JWKS's %d keys can verify tokens of the issuer: %s", e.n, strings.Join(e.reasons, "; "))
}

// trackedStorage is jwkset's in-memory storage of the fetched keys. jwkset
// hands it each fetched set (after fetching and parsing it whole); it
// keeps the usable keys, refuses a set without one, and tells the KeySet
// what changed.
type trackedStorage struct {
	*jwkset.MemoryJWKSet
	ks *KeySet
	mu sync.Mutex
}

func (t *trackedStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	keys := make([]jwkset.JWK, 0, len(given))
	var reasons, skipped []string
	for _, k := range given {
		if why := unusable(k, t.ks.algs); why != "" {
			kid := k.Marshal().KID
			skipped = append(skipped, kid)
			reasons = append(reasons, kidList([]string{kid})+": "+why)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return &noUsableKeyError{n: len(given), reasons: reasons}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, _ := t.MemoryJWKSet.KeyReadAll(ctx)
	if err := t.MemoryJWKSet.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	added, removed := diffKeys(old, keys)
	if len(removed) > 0 {
		// After the new set is in place: a verification that read the old
		// revision may have used a removed key, and is dropped; one that
		// reads the new revision used the new set.
		t.ks.rev.Add(1)
	}
	t.ks.recordOK(ctx, len(keys), added, removed, skipped)
	return nil
}

// diffKeys returns the kids of the keys in cur and not in old (added) and
// in old and not in cur (removed), by keyIdentity.
func diffKeys(old, cur []jwkset.JWK) (added, removed []string) {
	in := func(set []jwkset.JWK) map[string]string {
		m := make(map[string]string, len(set))
		for _, k := range set {
			m[keyIdentity(k)] = k.Marshal().KID
		}
		return m
	}
	o, c := in(old), in(cur)
	for id, kid := range c {
		if _, ok := o[id]; !ok {
			added = append(added, kid)
		}
	}
	for id, kid := range o {
		if _, ok := c[id]; !ok {
			removed = append(removed, kid)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// keyRead reads kid from the cached set, fetching the set again — at most
// once per unknownKidInterval and coalesced across concurrent Checks —
// when it is not there.
func (ks *KeySet) keyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	r := ks.remote.Load()
	if r == nil {
		return jwkset.JWK{}, errNotLoaded
	}
	if k, err := r.plain.KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	// A fetch in flight is joined whatever the limiter says: during a key
	// rotation every token naming the new kid waits for the one fetch
	// instead of failing while it runs.
	if ks.fetching.Load() || ks.limiter.Allow() {
		ks.fetchShared()
		if k, err := r.plain.KeyRead(ctx, kid); err == nil {
			return k, nil
		}
	}
	if ks.lastOK.Load() == 0 {
		return jwkset.JWK{}, errNotLoaded
	}
	return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, kid)
}

// keyReadAll returns the cached keys.
func (ks *KeySet) keyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	r := ks.remote.Load()
	if r == nil {
		return nil, errNotLoaded
	}
	return r.plain.KeyReadAll(ctx)
}
