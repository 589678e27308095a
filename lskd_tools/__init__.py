"""Plumbing every lskd command shares: file digests and writes, running external tools."""
