package mls

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJoinRefusesHeldGroupID: a new member must check that the group ID is
// unique among its groups (RFC 9420, §12.4.3). JoinWithStore consults the
// store; Join and JoinExternal take a GroupExists callback. Today's code
// joined a second group with the same ID, which then overwrote (or was
// confused with) the first one in the application's storage.
func TestJoinRefusesHeldGroupID(t *testing.T) {
	ctx := context.Background()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
	var err error
	alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
	require.NoError(t, err)

	// Bob already holds a group with this ID in his store.
	store := NewMemoryStore()
	_, err = store.SaveGroupRecords(ctx, alice.g.GroupID(), 0, []Record{{Key: []byte("k"), Value: []byte("bob's earlier group")}}, nil)
	require.NoError(t, err)
	kp := bob.keyPackage(t, cs)
	require.NoError(t, store.PutKeyPackage(ctx, kp))
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	welcome := transmit(t, pc.Welcome)

	_, _, err = JoinWithStore(ctx, welcome, store, nil, nil)
	require.ErrorIs(t, err, ErrGroupExists)
	require.True(t, isValidation(err, "12.4.3"), "%v", err)
	// Nothing was consumed or overwritten.
	_, err = store.KeyPackagePrivate(ctx, pc.Welcome.Welcome.Secrets[0].NewMember)
	require.NoError(t, err)
	sg, err := store.LoadGroupRecords(ctx, alice.g.GroupID())
	require.NoError(t, err)
	require.Len(t, sg.Records, 1)
	assert.True(t, bytes.Equal(sg.Records[0].Value, []byte("bob's earlier group")))

	// Plain Join, through the callback.
	held := func(id []byte) (bool, error) { return bytes.Equal(id, alice.g.GroupID()), nil }
	_, err = Join(welcome, kp, &JoinOptions{GroupExists: held}, nil)
	require.ErrorIs(t, err, ErrGroupExists)
	errStore := errors.New("store down")
	_, err = Join(welcome, kp, &JoinOptions{GroupExists: func([]byte) (bool, error) { return false, errStore }}, nil)
	require.ErrorIs(t, err, errStore)

	// Once the old state is gone, the same Welcome joins.
	require.NoError(t, store.DeleteGroup(ctx, alice.g.GroupID(), sg.Revision))
	bob.g, _, err = JoinWithStore(ctx, welcome, store, nil, nil)
	require.NoError(t, err)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	agree(t, []*member{alice, bob})

	// JoinExternal too.
	gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	carol := newMember(t, cs, "carol")
	_, _, err = JoinExternal(transmit(t, gi), carol.cred, carol.sig, &ExternalJoinOptions{GroupExists: held}, nil)
	require.ErrorIs(t, err, ErrGroupExists)
}
