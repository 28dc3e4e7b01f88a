package mls

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSettingsPersisted: the protocol settings a group was created with
// survive a restart, whatever Config the application passes to OpenGroup;
// only the hooks come from that Config. A deliberate SetConfig is saved.
func TestSettingsPersisted(t *testing.T) {
	ctx := context.Background()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice := newMember(t, cs, "alice")
	created := &Config{
		Handshake: HandshakePrivate, PaddingBlock: 64, PastEpochs: 5,
		MaxForwardDistance: 500, OutOfOrderTolerance: 7, MaxLeafLifetime: 100 * 24 * time.Hour,
		MaxCachedProposals: 9, ResumptionPSKEpochs: 4,
		Limits: Limits{MaxProposalsPerCommit: 77, MaxPSKsPerCommit: -1},
	}
	g, err := NewGroup(cs, alice.cred, alice.sig, nil, created)
	require.NoError(t, err)
	store := NewMemoryStore()
	require.NoError(t, SaveGroup(ctx, store, g, nil))

	hookCalled := false
	loadCfg := &Config{
		Handshake: HandshakePublic, PaddingBlock: 1, // ignored: the group's own settings win
		ProposalPolicy: func(*Proposal, Sender) error { hookCalled = true; return nil },
	}
	g2, err := OpenGroup(ctx, store, g.GroupID(), loadCfg)
	require.NoError(t, err)
	got := g2.Config()
	assert.Equal(t, HandshakePrivate, got.Handshake)
	assert.Equal(t, 64, got.PaddingBlock)
	assert.Equal(t, 5, got.PastEpochs)
	assert.Equal(t, 500, got.MaxForwardDistance)
	assert.Equal(t, 7, got.OutOfOrderTolerance)
	assert.Equal(t, 100*24*time.Hour, got.MaxLeafLifetime)
	assert.Equal(t, 9, got.MaxCachedProposals)
	assert.Equal(t, 4, got.ResumptionPSKEpochs)
	assert.Equal(t, Limits{MaxProposalsPerCommit: 77, MaxPSKsPerCommit: -1}, got.Limits)
	require.NotNil(t, got.ProposalPolicy, "hooks come from the Config given at load")

	// The reopened group behaves as created: handshakes go out private.
	bob := newMember(t, cs, "bob")
	pc, err := g2.Commit(&CommitOptions{Add: []*KeyPackage{bob.keyPackage(t, cs).KeyPackage}})
	require.NoError(t, err)
	assert.Equal(t, WireFormatPrivateMessage, pc.Commit.WireFormat)
	assert.True(t, hookCalled)

	// A deliberate change is saved and survives the next restart.
	cfg := g2.Config()
	cfg.Handshake = HandshakePublic
	g2.SetConfig(&cfg)
	require.NoError(t, SaveGroup(ctx, store, g2, nil))
	g3, err := OpenGroup(ctx, store, g.GroupID(), nil)
	require.NoError(t, err)
	assert.Equal(t, HandshakePublic, g3.Config().Handshake)
	assert.Equal(t, 64, g3.Config().PaddingBlock)
}
