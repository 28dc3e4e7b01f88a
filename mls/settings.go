package mls

import (
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
)

// This file stores a group's protocol settings with its state. The fields
// of [Config] that change what the group sends or accepts (wire format
// policy, padding, kept epochs, ratchet windows, limits) are part of the
// group: a member that restarts must behave exactly as before, and an
// application that passes a different Config to [OpenGroup] must not
// silently change them. The hooks (functions, the PSK store) cannot be
// stored and are taken from the Config given at load.

// Tags of the stored settings. New settings get new tags; unknown tags are
// refused, as a state written by a newer version may depend on them.
const (
	settingPastEpochs uint16 = iota + 1
	settingMaxForwardDistance
	settingOutOfOrderTolerance
	settingMaxLeafLifetime // seconds
	settingMaxCachedProposals
	settingHandshake
	settingPaddingBlock
	settingResumptionPSKEpochs
	settingMaxProposalsPerCommit
	settingMaxPSKsPerCommit
)

// marshalSettings encodes c's protocol settings:
//
//	struct { uint16 tag; uint64 value; } settings<V>;  // int64 values, two's complement
func (c *Config) marshalSettings(b *cryptobyte.Builder) {
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for _, kv := range []struct {
			tag uint16
			v   int64
		}{
			{settingPastEpochs, int64(c.PastEpochs)},
			{settingMaxForwardDistance, int64(c.MaxForwardDistance)},
			{settingOutOfOrderTolerance, int64(c.OutOfOrderTolerance)},
			{settingMaxLeafLifetime, int64(c.MaxLeafLifetime / time.Second)},
			{settingMaxCachedProposals, int64(c.MaxCachedProposals)},
			{settingHandshake, int64(c.Handshake)},
			{settingPaddingBlock, int64(c.PaddingBlock)},
			{settingResumptionPSKEpochs, int64(c.ResumptionPSKEpochs)},
			{settingMaxProposalsPerCommit, int64(c.Limits.MaxProposalsPerCommit)},
			{settingMaxPSKsPerCommit, int64(c.Limits.MaxPSKsPerCommit)},
		} {
			b.AddUint16(kv.tag)
			b.AddUint64(uint64(kv.v))
		}
	})
}

// unmarshalSettings reads settings written by marshalSettings into c,
// leaving its hooks alone.
func (c *Config) unmarshalSettings(s *cryptobyte.String) bool {
	var body cryptobyte.String
	if !wire.ReadVarintPrefixed(s, &body) {
		return false
	}
	seen := map[uint16]bool{}
	for !body.Empty() {
		var tag uint16
		var u uint64
		if !body.ReadUint16(&tag) || !body.ReadUint64(&u) || seen[tag] {
			return false
		}
		seen[tag] = true
		v := int64(u)
		if int64(int(v)) != v {
			return false
		}
		switch tag {
		case settingPastEpochs:
			c.PastEpochs = int(v)
		case settingMaxForwardDistance:
			c.MaxForwardDistance = int(v)
		case settingOutOfOrderTolerance:
			c.OutOfOrderTolerance = int(v)
		case settingMaxLeafLifetime:
			if v > int64(1<<63-1)/int64(time.Second) || v < -int64(1<<63-1)/int64(time.Second) {
				return false
			}
			c.MaxLeafLifetime = time.Duration(v) * time.Second
		case settingMaxCachedProposals:
			c.MaxCachedProposals = int(v)
		case settingHandshake:
			if v < 0 || v > 255 {
				return false
			}
			c.Handshake = WireFormatPolicy(v)
		case settingPaddingBlock:
			c.PaddingBlock = int(v)
		case settingResumptionPSKEpochs:
			c.ResumptionPSKEpochs = int(v)
		case settingMaxProposalsPerCommit:
			c.Limits.MaxProposalsPerCommit = int(v)
		case settingMaxPSKsPerCommit:
			c.Limits.MaxPSKsPerCommit = int(v)
		default:
			return false
		}
	}
	return true
}

// Config returns the group's configuration: its protocol settings, which
// are saved with the group, and the hooks it was created or loaded with.
func (g *Group) Config() Config { return g.cfg }

// SetConfig replaces the group's configuration. The protocol settings of
// cfg are saved with the group at the next save ([SaveGroup]) and kept
// across restarts; [OpenGroup] takes only the hooks from the Config it is
// given. Use it to change a group's settings deliberately, for instance
// to move its handshakes to PrivateMessage.
func (g *Group) SetConfig(cfg *Config) {
	if cfg == nil {
		cfg = &Config{}
	}
	g.cfg = *cfg
}
