package mtls

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/gatehouse/gatehouse/internal/config"
)

// maxPEM bounds a forwarded certificate (or chain); real ones are a few KiB.
const maxPEM = 64 << 10

// ParseCertificates decodes URL-encoded PEM, as Envoy forwards a peer
// certificate (attributes.source.certificate, XFCC Cert and Chain): one
// or more CERTIFICATE blocks, nothing else.
func ParseCertificates(urlEncoded string) ([]*x509.Certificate, error) {
	if len(urlEncoded) > 3*maxPEM {
		return nil, errors.New("mtls: certificate too large")
	}
	// PathUnescape, not QueryUnescape: a raw '+' in base64 stays a '+'.
	raw, err := url.PathUnescape(urlEncoded)
	if err != nil {
		return nil, fmt.Errorf("mtls: certificate is not URL-encoded PEM: %w", err)
	}
	rest := []byte(raw)
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("mtls: unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("mtls: bad certificate: %w", err)
		}
		certs = append(certs, c)
		if len(certs) > 16 {
			return nil, errors.New("mtls: too many certificates")
		}
	}
	if len(certs) == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("mtls: not a PEM certificate")
	}
	return certs, nil
}

// LoadBundles reads the trust domains' X.509 bundles: PEM CA
// certificates, or a SPIFFE bundle JSON document (starts with "{").
func LoadBundles(tds []config.TrustDomain) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	var errs config.Errors
	for i, tdc := range tds {
		p := config.Path("authz.mtls.trustDomains").Index(i)
		td := tdc.Name.TrustDomain()
		data := []byte(tdc.Bundle)
		field := "bundle"
		var err error
		if tdc.BundleFile != "" {
			field = "bundleFile"
			if data, err = os.ReadFile(string(tdc.BundleFile)); err != nil {
				errs.Add(p.Field(field), "cannot read: %v", err)
				continue
			}
		}
		var b *x509bundle.Bundle
		if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			sb, err := spiffebundle.Parse(td, data)
			if err != nil {
				errs.Add(p.Field(field), "not a SPIFFE bundle: %v", err)
				continue
			}
			b = sb.X509Bundle()
		} else if b, err = x509bundle.Parse(td, data); err != nil {
			errs.Add(p.Field(field), "not PEM CA certificates: %v", err)
			continue
		}
		if len(b.X509Authorities()) == 0 {
			errs.Add(p.Field(field), "holds no X.509 authority")
			continue
		}
		set.Add(b)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}
