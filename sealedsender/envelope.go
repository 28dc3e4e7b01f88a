package sealedsender

import (
	"fmt"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/mls"
	"golang.org/x/crypto/cryptobyte"
)

// EnvelopeVersion is the version of the envelope encoding this package
// writes and reads.
const EnvelopeVersion uint16 = 1

// Envelope is a sealed-sender envelope: what a client sends to the delivery
// service instead of a message signed or addressed with its identity.
//
//	struct {
//	    uint16 version = 1;
//	    uint16 scheme;
//	    opaque token<V>;
//	    opaque message<V>;   /* MLSMessage, wire format mls_private_message */
//	    opaque padding<V>;   /* all zero */
//	} Envelope;
//
// It has no sender field. The sender's leaf index is inside the
// PrivateMessage's encrypted sender data (RFC 9420, Section 6.3.2), which
// only members holding the epoch's keys can decrypt, and the token is
// unlinkable to the sender under [SchemePrivacyPass].
type Envelope struct {
	Version uint16
	Scheme  Scheme
	// Token is the encoded token that pays for the delivery.
	Token []byte
	// Message is an encoded MLSMessage of wire format mls_private_message
	// (RFC 9420, Section 6): an application message, or a proposal or
	// commit sent as a PrivateMessage.
	Message []byte
	// Padding is the number of zero bytes of padding.
	Padding int
}

func (e *Envelope) marshal(b *cryptobyte.Builder) {
	b.AddUint16(e.Version)
	b.AddUint16(uint16(e.Scheme))
	wire.AddVarintBytes(b, e.Token)
	wire.AddVarintBytes(b, e.Message)
	if e.Padding < 0 || e.Padding > wire.MaxVarint {
		b.SetError(fmt.Errorf("sealedsender: invalid padding size %d", e.Padding))
		return
	}
	wire.AddVarint(b, uint32(e.Padding))
	b.AddBytes(make([]byte, e.Padding))
}

func (e *Envelope) unmarshal(s *cryptobyte.String) bool {
	var padding cryptobyte.String
	if !s.ReadUint16(&e.Version) || !s.ReadUint16((*uint16)(&e.Scheme)) ||
		!wire.ReadVarintBytes(s, &e.Token) || !wire.ReadVarintBytes(s, &e.Message) ||
		!wire.ReadVarintPrefixed(s, &padding) {
		return false
	}
	for _, c := range padding {
		if c != 0 {
			return false
		}
	}
	e.Padding = len(padding)
	return true
}

// Bytes returns the encoding of e, or an error if a field is too large.
func (e *Envelope) Bytes() ([]byte, error) { return wire.Marshal(e.marshal) }

// ParseEnvelope decodes an Envelope. It checks the encoding only (the
// padding must be all zero); [Server.Accept] checks the rest.
func ParseEnvelope(b []byte) (*Envelope, error) {
	e := new(Envelope)
	if err := wire.Parse(b, e.unmarshal); err != nil {
		return nil, malformed("envelope", err)
	}
	return e, nil
}

// DefaultBuckets are the envelope sizes [Seal] pads to when given no
// buckets: powers of two from 256 bytes to 64 KiB. Larger envelopes are
// padded to a multiple of the largest bucket.
var DefaultBuckets = []int{256, 512, 1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10}

// Seal wraps an encoded MLSMessage in an envelope with the given token and
// pads the envelope to the smallest of buckets (sizes in bytes, ascending;
// nil for [DefaultBuckets]) it fits in, or to a multiple of the largest
// bucket. Pass an empty, non-nil bucket list for no padding.
//
// The message must have wire format mls_private_message (else
// [ErrNotPrivateMessage]): a PublicMessage names its sender in the clear,
// so handshake messages sent through an envelope must be encrypted too.
// The envelope depends on the token and the message only; nothing in it
// names the sender.
func Seal(scheme Scheme, token, message []byte, buckets []int) ([]byte, error) {
	if _, err := parsePrivateMessage(message); err != nil {
		return nil, err
	}
	e := &Envelope{Version: EnvelopeVersion, Scheme: scheme, Token: token, Message: message}
	if buckets == nil {
		buckets = DefaultBuckets
	}
	if err := e.pad(buckets); err != nil {
		return nil, err
	}
	return e.Bytes()
}

// pad sets e.Padding so that the encoded envelope fills a bucket.
func (e *Envelope) pad(buckets []int) error {
	e.Padding = 0
	if len(buckets) == 0 {
		return nil
	}
	b, err := e.Bytes()
	if err != nil {
		return err
	}
	base := len(b) - 1 // without the empty padding's 1-byte header
	largest := buckets[len(buckets)-1]
	if largest <= 0 {
		return fmt.Errorf("sealedsender: invalid bucket size %d", largest)
	}
	try := func(size int) bool {
		// Find p with base + len(varint(p)) + p == size.
		for _, hdr := range []int{1, 2, 4} {
			p := size - base - hdr
			if p >= 0 && p <= wire.MaxVarint && len(wire.AppendVarint(nil, uint32(p))) == hdr {
				e.Padding = p
				return true
			}
		}
		return false
	}
	for _, size := range buckets {
		if size > base && try(size) {
			return nil
		}
	}
	for size := (base/largest + 1) * largest; size-base <= wire.MaxVarint; size += largest {
		if try(size) {
			return nil
		}
	}
	return fmt.Errorf("sealedsender: envelope of %d bytes too large to pad", base)
}

// parsePrivateMessage checks that msg is an MLSMessage holding a
// PrivateMessage (RFC 9420, Section 6.3), with [mls.ParseMessage], and
// returns it. Only the public fields (group ID, epoch, content type) mean
// anything to the server; the sender is in the encrypted sender data.
func parsePrivateMessage(msg []byte) (*mls.PrivateMessage, error) {
	if len(msg) >= 4 {
		if v := uint16(msg[0])<<8 | uint16(msg[1]); v != uint16(mls.MLS10) {
			return nil, fmt.Errorf("sealedsender: MLS protocol version %d: %w", v, ErrNotPrivateMessage)
		}
		if wf := mls.WireFormat(uint16(msg[2])<<8 | uint16(msg[3])); wf != mls.WireFormatPrivateMessage {
			return nil, fmt.Errorf("sealedsender: MLS wire format %d: %w", wf, ErrNotPrivateMessage)
		}
	}
	m, err := mls.ParseMessage(msg)
	if err != nil {
		return nil, malformed("MLS PrivateMessage", err)
	}
	return m.PrivateMessage, nil
}

// SealMessage is [Seal] for an MLS message as returned by package mls.
func SealMessage(scheme Scheme, token []byte, m *mls.MLSMessage, buckets []int) ([]byte, error) {
	if m == nil || m.WireFormat != mls.WireFormatPrivateMessage {
		return nil, ErrNotPrivateMessage
	}
	msg, err := m.Bytes()
	if err != nil {
		return nil, malformed("MLS message", err)
	}
	return Seal(scheme, token, msg, buckets)
}

// Delivery is what the delivery service learns from an accepted envelope:
// where to route the message, and the message. It names no sender.
type Delivery struct {
	// GroupID is the MLS group the message is for.
	GroupID []byte
	// Epoch is the epoch the message was sent in.
	Epoch uint64
	// Message is the MLSMessage to deliver to the group's members.
	Message []byte
}

// Server is the delivery service's side of sealed sender: it accepts
// envelopes whose tokens its redeemers accept. It is safe for concurrent
// use if its redeemers are.
type Server struct {
	redeemers map[Scheme]Redeemer
}

// NewServer returns a server that redeems tokens with the given redeemers,
// at most one per scheme (a later one replaces an earlier one).
func NewServer(redeemers ...Redeemer) *Server {
	s := &Server{redeemers: make(map[Scheme]Redeemer)}
	for _, r := range redeemers {
		s.redeemers[r.Scheme()] = r
	}
	return s
}

// Accept parses an envelope, checks its message is a PrivateMessage,
// redeems its token for the message's group, and returns the group ID to
// route the message by. The token is spent only if everything else is
// valid, and a Privacy Pass token is accepted only for the group it was
// bound to. Errors match
// [ErrMalformed], [ErrUnsupportedVersion], [ErrUnsupportedScheme],
// [ErrNotPrivateMessage], or the errors of [Redeemer.Redeem]
// ([ErrInvalidToken], [ErrUnknownKey], [ErrExpired], [ErrDoubleSpend],
// [ErrRateLimited]).
func (s *Server) Accept(envelope []byte) (*Delivery, error) {
	e, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	if e.Version != EnvelopeVersion {
		return nil, fmt.Errorf("sealedsender: envelope version %d: %w", e.Version, ErrUnsupportedVersion)
	}
	r, ok := s.redeemers[e.Scheme]
	if !ok {
		return nil, fmt.Errorf("sealedsender: envelope scheme %v: %w", e.Scheme, ErrUnsupportedScheme)
	}
	pm, err := parsePrivateMessage(e.Message)
	if err != nil {
		return nil, err
	}
	if err := r.Redeem(e.Token, pm.GroupID); err != nil {
		return nil, err
	}
	return &Delivery{GroupID: pm.GroupID, Epoch: pm.Epoch, Message: e.Message}, nil
}
