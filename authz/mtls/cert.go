package mtls

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
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
