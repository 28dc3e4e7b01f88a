package mls

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Refusals of Welcomes into a group re-created by ReInit or branching that
// do not match the previous group (RFC 9420, §11.2, §11.3, §12.4.3.1).
// checkResumedWelcome is what Join runs on a Welcome's GroupSecrets,
// GroupContext and tree once they are authenticated; each case starts from
// inputs it accepts and breaks one rule.

func TestRefuseResumedWelcome(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := threeMembers(t, nil)
	prev := ms[0].g
	ri := NewReInitProposal(ReInitProposal{GroupID: []byte("next group"), Version: MLS10, CipherSuite: cs})
	pc, err := prev.Commit(&CommitOptions{Proposals: []Proposal{ri}})
	require.NoError(t, err)
	require.NoError(t, prev.MergePendingCommit(pc))
	require.NotNil(t, prev.PendingReInit())

	link := func(usage keyschedule.ResumptionPSKUsage) PreSharedKeyID {
		return PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: usage, PSKGroupID: prev.GroupID(), PSKEpoch: prev.Epoch(), PSKNonce: keyschedule.NewPSKNonce(cs)}
	}
	reinitCtx := func() *GroupContext {
		return &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("next group"), Epoch: 1}
	}
	branchCtx := func() *GroupContext {
		return &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("branch"), Epoch: 1}
	}
	tree := prev.state.tree
	// A tree with only alice, and one with an outsider.
	alone := m6Group(t, cs, nil, nil, nil, "alice")[0].g.state.tree
	outsider := m6Group(t, cs, nil, nil, nil, "alice", "mallory")[0].g.state.tree

	require.NoError(t, checkResumedWelcome([]PreSharedKeyID{link(keyschedule.ResumptionPSKUsageReInit)}, reinitCtx(), tree, prev), "a matching ReInit")
	require.NoError(t, checkResumedWelcome([]PreSharedKeyID{link(keyschedule.ResumptionPSKUsageBranch)}, branchCtx(), alone, prev), "a matching branch")

	cases := []struct {
		name  string
		psks  []PreSharedKeyID
		ctx   func(*GroupContext)
		tree  *treekem.Tree
		prev  *Group
		usage keyschedule.ResumptionPSKUsage
		want  []any
	}{
		{"two-links", []PreSharedKeyID{link(keyschedule.ResumptionPSKUsageReInit), link(keyschedule.ResumptionPSKUsageBranch)}, nil, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"12.4.3.1"}},
		{"reinit/epoch", nil, func(c *GroupContext) { c.Epoch = 2 }, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"12.4.3.1"}},
		{"reinit/no-previous-group", nil, nil, tree, nil, keyschedule.ResumptionPSKUsageReInit, []any{ErrNotFound}},
		{"reinit/group-id", nil, func(c *GroupContext) { c.GroupID = []byte("other") }, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"11.2"}},
		{"reinit/version", nil, func(c *GroupContext) { c.Version = 2 }, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"11.2"}},
		{"reinit/suite", nil, func(c *GroupContext) { c.CipherSuite = MLS_128_DHKEMP256_AES128GCM_SHA256_P256 }, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"11.2"}},
		{"reinit/extensions", nil, func(c *GroupContext) {
			c.Extensions = []Extension{{Type: ExtensionApplicationID, Data: []byte{}}}
		}, tree, prev, keyschedule.ResumptionPSKUsageReInit, []any{"11.2"}},
		{"reinit/member-missing", nil, nil, alone, prev, keyschedule.ResumptionPSKUsageReInit, []any{"11.2"}},
		{"branch/epoch", nil, func(c *GroupContext) { c.Epoch = 5 }, alone, prev, keyschedule.ResumptionPSKUsageBranch, []any{"12.4.3.1"}},
		{"branch/version", nil, func(c *GroupContext) { c.Version = 2 }, alone, prev, keyschedule.ResumptionPSKUsageBranch, []any{"11.3"}},
		{"branch/suite", nil, func(c *GroupContext) { c.CipherSuite = MLS_128_DHKEMP256_AES128GCM_SHA256_P256 }, alone, prev, keyschedule.ResumptionPSKUsageBranch, []any{"11.3"}},
		{"branch/outsider", nil, nil, outsider, prev, keyschedule.ResumptionPSKUsageBranch, []any{"11.3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			psks := c.psks
			if psks == nil {
				psks = []PreSharedKeyID{link(c.usage)}
			}
			ctx := reinitCtx()
			if c.usage == keyschedule.ResumptionPSKUsageBranch {
				ctx = branchCtx()
			}
			if c.ctx != nil {
				c.ctx(ctx)
			}
			err := checkResumedWelcome(psks, ctx, c.tree, c.prev)
			require.Error(t, err)
			requireMatches(t, err, c.want...)
		})
	}
	t.Run("reinit/previous-epoch", func(t *testing.T) {
		// The PSK must name the epoch of the ReInit commit.
		id := link(keyschedule.ResumptionPSKUsageReInit)
		id.PSKEpoch--
		requireMatches(t, checkResumedWelcome([]PreSharedKeyID{id}, reinitCtx(), tree, prev), "11.2")
	})
	t.Run("reinit/no-reinit", func(t *testing.T) {
		// A group whose last commit was not a ReInit.
		other := threeMembers(t, nil)[0].g
		id := PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageReInit, PSKGroupID: other.GroupID(), PSKEpoch: other.Epoch(), PSKNonce: keyschedule.NewPSKNonce(cs)}
		requireMatches(t, checkResumedWelcome([]PreSharedKeyID{id}, reinitCtx(), tree, other), "11.2")
	})
}

func TestRefuseAfterReInit(t *testing.T) {
	// §12.4.2: once a ReInit commit is merged the group reads only late
	// application messages.
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := threeMembers(t, nil)
	late, err := ms[2].g.EncryptApplication([]byte("late"), nil)
	require.NoError(t, err)
	proposal := forgeProposal(t, ms[2].g, WireFormatPublicMessage, externalPSKOf(cs, "k"))
	privProposal := forgeProposal(t, ms[2].g, WireFormatPrivateMessage, externalPSKOf(cs, "k"))
	ri := NewReInitProposal(ReInitProposal{GroupID: []byte("next group"), Version: MLS10, CipherSuite: cs})
	pc, err := ms[0].g.Commit(&CommitOptions{Proposals: []Proposal{ri}})
	require.NoError(t, err)
	deliverCommit(t, ms[0], pc, ms)
	require.NotNil(t, ms[1].g.PendingReInit())

	refused(t, ms[1].g, proposal, ErrReInitialized)
	refused(t, ms[1].g, privProposal, ErrReInitialized)
	res, err := ms[1].g.Process(transmit(t, late))
	require.NoError(t, err, "a late application message is still read")
	require.Equal(t, "late", string(res.ApplicationData))
}

func TestRefuseGroupSecretsTrailingData(t *testing.T) {
	// GroupSecrets that decrypt but do not parse exactly (a stray byte
	// after them) are malformed, even though every field is there.
	alice, w, kp := welcomeFixture(t, nil, nil)
	bad := resealWelcomeSuffix(t, w, kp, alice.sig, func(*GroupInfo, *GroupSecrets) {}, []byte{0})
	_, err := Join(transmit(t, bad), kp, nil, nil)
	requireMatches(t, err, ErrMalformed)
	good := resealWelcome(t, w, kp, alice.sig, func(*GroupInfo, *GroupSecrets) {})
	_, err = Join(transmit(t, good), kp, nil, nil)
	require.NoError(t, err, "the same Welcome sealed again without the stray byte")
}
