"""Firewall: desired state from an Allowlist, nft/ipset backends, plan/apply/status/remove."""
