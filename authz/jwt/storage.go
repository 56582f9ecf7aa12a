package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/MicahParks/jwkset"
)

// storage is the jwkset.Storage keyfunc reads for one issuer: its static
// keys first, then its remote key set (cache, then a rate-limited fetch
// for an unknown kid). It is read-only.
type storage struct {
	static *staticKeys
	ks     *KeySet // nil: static keys only
}

func (s storage) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	if k, err := s.static.set.KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	if s.ks == nil {
		return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, kid)
	}
	return s.ks.keyRead(ctx, kid)
}

func (s storage) KeyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	out, _ := s.static.set.KeyReadAll(ctx)
	if s.ks != nil {
		more, err := s.ks.keyReadAll(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
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
