"""Firewall backends: ``nft`` (nf_tables over netlink) and ``ipset`` (hash:net sets + iptables)."""
