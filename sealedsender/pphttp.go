package sealedsender

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AuthScheme is the HTTP authentication scheme of RFC 9577, Section 2.
const AuthScheme = "PrivateToken"

// MaxHeaderSize is the longest WWW-Authenticate or Authorization value
// this package parses; longer ones are refused before parsing.
const MaxHeaderSize = 16 << 10

// AuthChallenge is one PrivateToken challenge of a WWW-Authenticate header
// (RFC 9577, Section 2.1.2).
type AuthChallenge struct {
	// Challenge is the TokenChallenge (the "challenge" parameter).
	Challenge *TokenChallenge
	// TokenKey is the issuer's public key (the "token-key" parameter),
	// or nil if the header left it out.
	TokenKey []byte
	// MaxAge is the "max-age" parameter in seconds, or 0 if absent.
	MaxAge int64
}

// String returns the challenge as a WWW-Authenticate value, for example
//
//	PrivateToken challenge="AAEA...", token-key="A1b2...", max-age=3600
//
// with the values in base64url with padding, quoted (RFC 9577, Section
// 2.1.2). It returns "" if the challenge cannot be encoded.
func (a *AuthChallenge) String() string {
	ch, err := a.Challenge.Bytes()
	if err != nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(AuthScheme + ` challenge="` + base64.URLEncoding.EncodeToString(ch) + `"`)
	if a.TokenKey != nil {
		b.WriteString(`, token-key="` + base64.URLEncoding.EncodeToString(a.TokenKey) + `"`)
	}
	if a.MaxAge > 0 {
		b.WriteString(", max-age=" + strconv.FormatInt(a.MaxAge, 10))
	}
	return b.String()
}

// ParseWWWAuthenticate returns the PrivateToken challenges of a
// WWW-Authenticate value, in order (RFC 9577, Section 2.1). Challenges of
// other schemes, unknown parameters, and PrivateToken challenges whose
// TokenChallenge is malformed or of an unsupported token type are ignored,
// as Section 2.1.3 requires; if none is left the error matches
// [ErrMalformed].
func ParseWWWAuthenticate(header string) ([]*AuthChallenge, error) {
	chs, err := parseAuthHeader(header)
	if err != nil {
		return nil, err
	}
	var out []*AuthChallenge
	for _, c := range chs {
		if !strings.EqualFold(c.scheme, AuthScheme) {
			continue
		}
		raw, err := decodeBase64URL(c.params["challenge"])
		if err != nil {
			continue
		}
		tc, err := ParseTokenChallenge(raw)
		if err != nil {
			continue
		}
		if _, err := tc.TokenType.params(); err != nil {
			continue
		}
		a := &AuthChallenge{Challenge: tc}
		if k, ok := c.params["token-key"]; ok {
			if a.TokenKey, err = decodeBase64URL(k); err != nil {
				continue
			}
		}
		if m, ok := c.params["max-age"]; ok {
			if a.MaxAge, err = strconv.ParseInt(m, 10, 64); err != nil || a.MaxAge < 0 {
				continue
			}
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, malformed("WWW-Authenticate", errors.New("no usable PrivateToken challenge"))
	}
	return out, nil
}

// AuthorizationHeader returns the Authorization value that presents token
// (RFC 9577, Section 2.2.2): PrivateToken token="<base64url>".
func AuthorizationHeader(token []byte) string {
	return AuthScheme + ` token="` + base64.URLEncoding.EncodeToString(token) + `"`
}

// ParseAuthorization returns the token of a PrivateToken Authorization
// value (RFC 9577, Section 2.2.2). Unknown parameters are ignored.
func ParseAuthorization(header string) ([]byte, error) {
	chs, err := parseAuthHeader(header)
	if err != nil {
		return nil, err
	}
	if len(chs) != 1 || !strings.EqualFold(chs[0].scheme, AuthScheme) {
		return nil, malformed("Authorization", errors.New("not one PrivateToken credential"))
	}
	v, ok := chs[0].params["token"]
	if !ok {
		return nil, malformed("Authorization", errors.New("no token parameter"))
	}
	tok, err := decodeBase64URL(v)
	if err != nil || len(tok) == 0 {
		return nil, malformed("Authorization token", err)
	}
	return tok, nil
}

// authItem is one challenge or credential: a scheme and its parameters
// (names in lower case).
type authItem struct {
	scheme string
	params map[string]string
}

// parseAuthHeader parses a list of challenges or credentials (RFC 9110,
// Section 11.3 and 11.6.1):
//
//	challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param = token BWS "=" BWS ( token / quoted-string )
//
// Unquoted parameter values may also hold base64 "=" padding, as some
// implementations send. A token68 is accepted and ignored.
func parseAuthHeader(h string) ([]authItem, error) {
	if len(h) > MaxHeaderSize {
		return nil, malformed("authentication header", fmt.Errorf("%d bytes", len(h)))
	}
	p := &headerParser{s: h}
	var out []authItem
	for {
		p.skipListSeparators()
		if p.done() {
			break
		}
		scheme := p.token()
		if scheme == "" {
			return nil, malformed("authentication header", fmt.Errorf("expected a scheme at %d", p.i))
		}
		item := authItem{scheme: scheme, params: map[string]string{}}
		p.skipWS()
		if p.skipToken68() {
			out = append(out, item)
			continue
		}
		for !p.done() && p.s[p.i] != ',' {
			save := p.i
			name := p.token()
			p.skipWS()
			if name == "" || p.done() || p.s[p.i] != '=' {
				p.i = save
				break // the next challenge's scheme
			}
			if p.token68End() {
				p.skipEquals() // a token68: ignored
				break
			}
			p.i++ // '='
			p.skipWS()
			val, ok := p.value()
			if !ok {
				return nil, malformed("authentication header", fmt.Errorf("bad value at %d", p.i))
			}
			name = strings.ToLower(name)
			if _, dup := item.params[name]; dup {
				return nil, malformed("authentication header", fmt.Errorf("parameter %q twice", name))
			}
			item.params[name] = val
			p.skipWS()
			if p.done() {
				break
			}
			if p.s[p.i] != ',' {
				return nil, malformed("authentication header", fmt.Errorf("expected a comma at %d", p.i))
			}
			p.i++
			p.skipWS()
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return nil, malformed("authentication header", errors.New("empty"))
	}
	return out, nil
}

type headerParser struct {
	s string
	i int
}

func (p *headerParser) done() bool { return p.i >= len(p.s) }

func (p *headerParser) skipWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *headerParser) skipListSeparators() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

func (p *headerParser) skipEquals() {
	for !p.done() && p.s[p.i] == '=' {
		p.i++
	}
}

// token68End reports whether the '=' at p.i is base64 padding ending a
// token68 (only '=' follow, then the end, a space or a comma).
func (p *headerParser) token68End() bool {
	j := p.i
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	return j-p.i > 1 || j == len(p.s) || p.s[j] == ',' || (p.s[j] == ' ' && p.nextNonSpace(j) == ',')
}

// skipToken68 skips a token68 (RFC 9110, Section 11.2) standing alone
// after a scheme, and reports whether there was one.
func (p *headerParser) skipToken68() bool {
	j := p.i
	for j < len(p.s) && (isTchar(p.s[j]) && p.s[j] != '!' || p.s[j] == '/') {
		j++
	}
	if j == p.i {
		return false
	}
	k := j
	for k < len(p.s) && p.s[k] == '=' {
		k++
	}
	if k < len(p.s) && p.nextNonSpace(k) != ',' {
		return false
	}
	p.i = k
	return true
}

func (p *headerParser) nextNonSpace(j int) byte {
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	if j == len(p.s) {
		return ','
	}
	return p.s[j]
}

func isTchar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *headerParser) token() string {
	j := p.i
	for j < len(p.s) && isTchar(p.s[j]) {
		j++
	}
	t := p.s[p.i:j]
	p.i = j
	return t
}

// value reads a token (with trailing '=' padding allowed) or a
// quoted-string.
func (p *headerParser) value() (string, bool) {
	if p.done() {
		return "", false
	}
	if p.s[p.i] != '"' {
		v := p.token()
		j := p.i
		p.skipEquals()
		v += p.s[j:p.i]
		return v, v != ""
	}
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), true
		case c == '\\' && p.i+1 < len(p.s):
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", false
}

// AuthChallenge returns the WWW-Authenticate challenge a delivery service
// sends for envelopes to the group groupID (RFC 9577, Section 2.1): the
// issuer's base challenge bound to the group ([TokenChallenge.ForGroup])
// and the current period's key. A standard Privacy Pass client can fetch
// and redeem a token for it without knowing anything of this package.
func (i *PrivacyPassIssuer) AuthChallenge(groupID []byte, maxAge int64) (*AuthChallenge, error) {
	now := i.cfg.Now()
	redeemFrom, _, _ := i.window(now)
	k, err := i.key(i.cfg.period(now), redeemFrom)
	if err != nil {
		return nil, err
	}
	return &AuthChallenge{
		Challenge: i.challenge.ForGroup(groupID),
		TokenKey:  append([]byte{}, k.pub.PublicKey...),
		MaxAge:    maxAge,
	}, nil
}
