package sealedsender

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/microchat/e2ee/mls"
)

// MaxDirectorySize is the largest issuer directory [ParseKeyDirectory]
// reads; anything longer is refused before it is parsed.
const MaxDirectorySize = 64 << 10

// IssuerKey is one entry of an issuer directory's token-keys list (RFC
// 9578, Section 4).
type IssuerKey struct {
	TokenType TokenType
	// PublicKey is the token-key: for the VOPRF token types,
	// SerializeElement(pkI) (RFC 9497, Section 2.1).
	PublicKey []byte
	// NotBefore is the not-before time, in seconds since the Unix epoch, or
	// 0 if the directory gave none. An issuer of this package sets it to
	// the start of the key's period.
	NotBefore int64
}

// ID returns the key's token_key_id, SHA-256 of its public key (RFC 9578,
// Section 5.5).
func (k *IssuerKey) ID() [32]byte { return sha256.Sum256(k.PublicKey) }

// KeyDirectory is an issuer directory (RFC 9578, Section 4): the JSON
// object served as application/private-token-issuer-directory at
// /.well-known/private-token-issuer-directory. Keys are in the issuer's
// order of preference.
type KeyDirectory struct {
	IssuerRequestURI string
	Keys             []IssuerKey
}

type jsonTokenKey struct {
	TokenType uint16 `json:"token-type"`
	TokenKey  string `json:"token-key"`
	NotBefore int64  `json:"not-before,omitempty"`
}

type jsonDirectory struct {
	IssuerRequestURI string         `json:"issuer-request-uri"`
	TokenKeys        []jsonTokenKey `json:"token-keys"`
}

// Bytes returns the JSON encoding of d, with the token keys in base64url
// with padding (RFC 9578, Section 4).
func (d *KeyDirectory) Bytes() ([]byte, error) {
	j := jsonDirectory{IssuerRequestURI: d.IssuerRequestURI, TokenKeys: make([]jsonTokenKey, 0, len(d.Keys))}
	for _, k := range d.Keys {
		j.TokenKeys = append(j.TokenKeys, jsonTokenKey{uint16(k.TokenType), base64.URLEncoding.EncodeToString(k.PublicKey), k.NotBefore})
	}
	return json.Marshal(j)
}

// ParseKeyDirectory decodes an issuer directory. Unknown fields are
// ignored, and keys of unknown token types are kept (clients skip them).
// The issuer-request-uri and a token-key for each entry are required, and
// not-before must not be negative.
func ParseKeyDirectory(b []byte) (*KeyDirectory, error) {
	if len(b) > MaxDirectorySize {
		return nil, malformed("key directory", fmt.Errorf("%d bytes", len(b)))
	}
	var j jsonDirectory
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, malformed("key directory", err)
	}
	if j.IssuerRequestURI == "" || j.TokenKeys == nil {
		return nil, malformed("key directory", fmt.Errorf("missing issuer-request-uri or token-keys"))
	}
	d := &KeyDirectory{IssuerRequestURI: j.IssuerRequestURI, Keys: make([]IssuerKey, 0, len(j.TokenKeys))}
	for _, k := range j.TokenKeys {
		pub, err := decodeBase64URL(k.TokenKey)
		if err != nil || len(pub) == 0 || k.NotBefore < 0 {
			return nil, malformed("key directory token-key", err)
		}
		d.Keys = append(d.Keys, IssuerKey{TokenType: TokenType(k.TokenType), PublicKey: pub, NotBefore: k.NotBefore})
	}
	return d, nil
}

// decodeBase64URL decodes base64url (RFC 4648, Section 5) with padding, as
// RFC 9577 and RFC 9578 require on the wire, or without it, as some
// implementations send.
func decodeBase64URL(s string) ([]byte, error) {
	if b, err := base64.URLEncoding.Strict().DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// ClientConfig is what a client expects of an issuer's keys. The zero
// value of every field selects its default, which matches
// [IssuerConfig]'s.
type ClientConfig struct {
	// Now returns the current time. The default is [time.Now].
	Now func() time.Time
	// Period is the issuer's key period, which the client knows from its
	// configuration (not from the directory, which a hostile server
	// writes). The default is 24 hours.
	Period time.Duration
	// ClockSkew is how far the client's clock may be off. The default is
	// 5 minutes, capped at Period.
	ClockSkew time.Duration
}

func (c *ClientConfig) withDefaults() ClientConfig {
	var out ClientConfig
	if c != nil {
		out = *c
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	if out.Period < time.Second {
		out.Period = defaultPeriod
	}
	if out.ClockSkew <= 0 {
		out.ClockSkew = defaultClockSkew
	}
	if out.ClockSkew > out.Period {
		out.ClockSkew = out.Period
	}
	return out
}

func (c *ClientConfig) issuerConfig() *IssuerConfig {
	return &IssuerConfig{Now: c.Now, Period: c.Period, ClockSkew: c.ClockSkew}
}

// KeyView is what one client was given by the issuer: the challenge its
// tokens answer and the issuer's keys of type t for the periods around
// now, checked against what the client expects. Members of a group compare
// their views with [KeyView.Tag] and [KeyView.Check].
type KeyView struct {
	tokenType TokenType
	challenge [32]byte // digest of the base challenge (empty redemption context)
	current   IssuerKey
	keys      []IssuerKey // every key of tokenType in the directory, each of an expected period
}

// NewKeyView checks a directory and a challenge as a client must before
// using them, and returns the view to request tokens with.
//
// Every key of the challenge's token type must have a not-before time
// that starts a period (of cfg.Period) and that period must be the
// previous, current or next one (allowing cfg.ClockSkew); no period may
// have two keys; and the current period must have one. Anything else fails
// with [ErrUnexpectedKey]: a key for an unexpected period is a key the
// server could be showing this client alone. Within these rules a
// server can still give each client its own key for the current period;
// that is what comparing views through the group detects.
func NewKeyView(dir *KeyDirectory, challenge *TokenChallenge, cfg *ClientConfig) (*KeyView, error) {
	c := cfg.withDefaults()
	ic := c.issuerConfig()
	if _, err := challenge.TokenType.params(); err != nil {
		return nil, err
	}
	if len(challenge.RedemptionContext) != 0 {
		return nil, fmt.Errorf("sealedsender: base challenge with a redemption context: %w", ErrUnexpectedKey)
	}
	digest, err := challenge.digest()
	if err != nil {
		return nil, err
	}
	now := c.Now()
	lo, hi := ic.period(now.Add(-c.ClockSkew)), ic.period(now.Add(c.ClockSkew))
	if lo > 0 {
		lo--
	}
	hi++
	cur := ic.period(now)
	v := &KeyView{tokenType: challenge.TokenType, challenge: digest}
	seen := map[uint64]bool{}
	found := false
	secs := int64(c.Period / time.Second)
	for _, k := range dir.Keys {
		if k.TokenType != challenge.TokenType {
			continue
		}
		if k.NotBefore <= 0 || k.NotBefore%secs != 0 {
			return nil, fmt.Errorf("sealedsender: key with not-before %d, not a period start: %w", k.NotBefore, ErrUnexpectedKey)
		}
		p := uint64(k.NotBefore / secs)
		if p < lo || p > hi {
			return nil, fmt.Errorf("sealedsender: key for period %d outside %d..%d: %w", p, lo, hi, ErrUnexpectedKey)
		}
		if seen[p] {
			return nil, fmt.Errorf("sealedsender: two keys for period %d: %w", p, ErrUnexpectedKey)
		}
		seen[p] = true
		params, _ := k.TokenType.params()
		if _, ok := params.parseElement(k.PublicKey); !ok {
			return nil, malformed("issuer public key", nil)
		}
		k.PublicKey = append([]byte{}, k.PublicKey...)
		v.keys = append(v.keys, k)
		if p == cur {
			v.current, found = k, true
		}
	}
	if !found {
		return nil, fmt.Errorf("sealedsender: no %v key for the current period %d: %w", challenge.TokenType, cur, ErrUnexpectedKey)
	}
	return v, nil
}

// Key returns the key to request tokens with: the current period's.
func (v *KeyView) Key() *IssuerKey {
	k := v.current
	k.PublicKey = append([]byte{}, k.PublicKey...)
	return &k
}

// keyViewLabel is the MLS exporter label of [KeyView.Tag].
const keyViewLabel = "MicroChat sealedsender key view"

// KeyViewTagSize is the size of a [KeyView.Tag].
const KeyViewTagSize = 16

// tag is MLS-Exporter(keyViewLabel, token_type || challenge_digest ||
// not_before || token_key_id, 16) of g's current epoch.
func (v *KeyView) tag(g *mls.Group, k *IssuerKey) ([]byte, error) {
	id := k.ID()
	ctx := make([]byte, 0, 2+32+8+32)
	ctx = binary.BigEndian.AppendUint16(ctx, uint16(v.tokenType))
	ctx = append(ctx, v.challenge[:]...)
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(k.NotBefore))
	ctx = append(ctx, id[:]...)
	return g.Export(keyViewLabel, ctx, KeyViewTagSize)
}

// Tag returns a value for the other members of g to compare with their own
// views: an MLS exporter value (RFC 9420, Section 8.5) of g's current epoch
// over the token type, the challenge digest, and the current key's
// not-before and token_key_id. Send it with messages to g, for example as
// the authenticated_data of application messages; receivers call
// [KeyView.Check] on it.
//
// The server sees authenticated_data but cannot compute or relate tags:
// they depend on the epoch's exporter secret. Two members with the same
// view send the same tag in an epoch, and the envelope's token already
// shows the server which key the sender used, so the tag tells it nothing
// more.
func (v *KeyView) Tag(g *mls.Group) ([]byte, error) { return v.tag(g, &v.current) }

// Check compares a tag received from another member of g (in g's current
// epoch) with this view: it succeeds if the tag is that of one of the keys
// this client was given with the same challenge, and fails with
// [ErrKeyMismatch] otherwise. A mismatch means the server gave the sender
// or this client a key or challenge the other was not given: one of the
// two is being tagged. Report it to the user; stop fetching tokens with
// this view.
func (v *KeyView) Check(g *mls.Group, tag []byte) error {
	for i := range v.keys {
		want, err := v.tag(g, &v.keys[i])
		if err != nil {
			return err
		}
		if hmac.Equal(want, tag) {
			return nil
		}
	}
	return fmt.Errorf("sealedsender: a member of the group was given other issuer keys or another challenge: %w", ErrKeyMismatch)
}
