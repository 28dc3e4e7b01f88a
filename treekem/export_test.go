package treekem

// DecryptUpdatePathForTest exposes the path secret that DecryptUpdatePath
// decrypts, which the treekem vectors check.
func DecryptUpdatePathForTest(t *Tree, priv *PrivateKeys, sender LeafIndex, path *UpdatePath, groupContext []byte, excluded []LeafIndex) (*PrivateKeys, []byte, NodeIndex, []byte, error) {
	return t.decryptUpdatePath(priv, sender, path, groupContext, excluded)
}
