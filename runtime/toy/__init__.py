"""The embedded ``toy`` model as served: network, vocabulary and text side, shipped weights.
Its world, probe, trainer and evaluation live in the separate ``toylab`` package."""
