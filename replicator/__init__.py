"""Shared parts of the replicator: settings, message model, clients, copy engine, reconcile."""
