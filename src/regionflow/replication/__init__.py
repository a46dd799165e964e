"""Replication: object changes into the feed, and a replicator per direction that applies a source's feed."""
